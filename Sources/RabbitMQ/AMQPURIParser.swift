/// Parses AMQP URIs (RabbitMQ's "URI Specification" and its query parameters) into a
/// configuration. librabbitmq's own parser rejects query strings and non-ASCII escapes, so the
/// client parses URIs itself.
enum AMQPURIParser {
    typealias Configuration = AMQPConnection.Configuration

    static let knownParameters = [
        "heartbeat", "frame_max", "channel_max", "connection_timeout", "auth_mechanism",
        "cacertfile", "certfile", "keyfile", "verify", "server_name_indication",
    ]

    static func parse(_ uri: String) throws -> Configuration {
        guard let schemeEnd = uri.range(of: "://") else {
            throw invalid("the URI has no scheme; expected amqp://host or amqps://host")
        }
        let scheme = uri[..<schemeEnd.lowerBound].lowercased()
        var configuration = Configuration()
        switch scheme {
        case "amqp":
            configuration.port = 5672
        case "amqps":
            configuration.port = 5671
            configuration.tls = .init()
        default:
            throw invalid("unsupported scheme '\(scheme)'; expected amqp or amqps")
        }

        var rest = uri[schemeEnd.upperBound...]
        if rest.contains("#") { throw invalid("the URI must not have a fragment ('#')") }
        var query: Substring?
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        let authority: Substring
        var path: Substring?
        if let slash = rest.firstIndex(of: "/") {
            authority = rest[..<slash]
            path = rest[rest.index(after: slash)...]
        } else {
            authority = rest
        }

        var hostPort = authority
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            hostPort = authority[authority.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                configuration.user = try decode(userInfo[..<colon], what: "the user name")
                configuration.password = try decode(
                    userInfo[userInfo.index(after: colon)...], what: "the password")
            } else {
                configuration.user = try decode(userInfo, what: "the user name")
                configuration.password = ""
            }
        }
        try parseHostPort(hostPort, into: &configuration)

        if let path {
            if path.contains("/") {
                throw invalid("the vhost must be a single path segment; write '/' inside it as %2F")
            }
            configuration.virtualHost = try decode(path, what: "the vhost")
        }
        if let query {
            try parseQuery(query, into: &configuration)
        }
        return configuration
    }

    private static func parseHostPort(_ text: Substring, into configuration: inout Configuration) throws {
        var portText: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw invalid("the IPv6 address has no closing ']'")
            }
            let address = text[text.index(after: text.startIndex)..<close]
            guard !address.isEmpty, address.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else {
                throw invalid("'\(address)' is not an IPv6 address")
            }
            configuration.host = String(address)
            let after = text[text.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw invalid("unexpected '\(after)' after the IPv6 address") }
                portText = after.dropFirst()
            }
        } else {
            var hostText = text
            if let colon = text.lastIndex(of: ":") {
                hostText = text[..<colon]
                portText = text[text.index(after: colon)...]
            }
            if hostText.contains(":") {
                throw invalid("an IPv6 host must be written in brackets, e.g. amqp://[::1]:5672")
            }
            let host = try decode(hostText, what: "the host")
            if !host.isEmpty { configuration.host = host }
        }
        if let portText {
            // A port that is not digits is not echoed: in "amqp://user:secret" (a forgotten '@host')
            // the "port" is a password.
            guard !portText.isEmpty, portText.allSatisfy({ $0.isASCII && $0.isNumber }) else {
                throw invalid("the port must be a number from 1 to 65535")
            }
            guard let port = Int(portText), (1...65535).contains(port) else {
                throw invalid("the port \(portText) is not from 1 to 65535")
            }
            configuration.port = port
        }
    }

    private static func parseQuery(_ query: Substring, into configuration: inout Configuration) throws {
        var seen: Set<String> = []
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            guard let equals = pair.firstIndex(of: "=") else {
                throw invalid("the query parameter '\(pair)' has no value")
            }
            let key = try decode(pair[..<equals], what: "a query parameter name")
            let value = try decode(pair[pair.index(after: equals)...], what: "the value of '\(key)'")
            guard knownParameters.contains(key) else {
                throw invalid(
                    "unknown query parameter '\(key)'; known: \(knownParameters.joined(separator: ", "))")
            }
            guard seen.insert(key).inserted else { throw invalid("the query parameter '\(key)' is repeated") }
            try apply(key, value, to: &configuration)
        }
    }

    private static func apply(_ key: String, _ value: String, to configuration: inout Configuration) throws {
        switch key {
        case "heartbeat":
            configuration.heartbeat = try integer(value, key, in: 0...Int(UInt16.max))
        case "frame_max":
            configuration.frameMax = try integer(value, key, in: 4096...Int(UInt32.max))
        case "channel_max":
            configuration.channelMax = try integer(value, key, in: 0...Int(UInt16.max))
        case "connection_timeout":
            let milliseconds: Int = try integer(value, key, in: 1...Int(Int32.max))
            configuration.connectionTimeout = .milliseconds(milliseconds)
        case "auth_mechanism":
            guard let mechanism = Configuration.AuthMechanism(rawValue: value.uppercased()) else {
                throw invalid("auth_mechanism '\(value)' is not supported; use plain or external")
            }
            configuration.authMechanism = mechanism
        default:
            guard configuration.tls != nil else {
                throw invalid("the TLS parameter '\(key)' needs an amqps:// URI")
            }
            switch key {
            case "cacertfile": configuration.tls?.caCertificateFile = value
            case "certfile": configuration.tls?.certificateFile = value
            case "keyfile": configuration.tls?.keyFile = value
            case "server_name_indication":
                // librabbitmq 0.11 always sends the host connected to as SNI and offers no way to
                // send another name: accept the parameter only when it says the same.
                guard value.lowercased() == configuration.host.lowercased() else {
                    throw invalid(
                        "server_name_indication '\(value)' differs from the host; librabbitmq sends the host as the TLS server name, so connect to that name instead")
                }
            default:  // verify
                switch value {
                case "verify_peer": configuration.tls?.verifyPeer = true
                case "verify_none": configuration.tls?.verifyPeer = false
                default: throw invalid("verify '\(value)' must be verify_peer or verify_none")
                }
            }
        }
    }

    private static func integer<T: FixedWidthInteger>(
        _ value: String, _ key: String, in range: ClosedRange<Int>
    ) throws -> T {
        guard value.allSatisfy(\.isASCII), let number = Int(value), range.contains(number) else {
            throw invalid("\(key) '\(value)' must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return T(number)
    }

    /// Percent-decodes one URI component; the result must be UTF-8. The text of `what` names the
    /// component in the error, and the component itself is never echoed (it may be a password).
    static func decode(_ component: Substring, what: String) throws -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(component.utf8.count)
        var iterator = component.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                throw invalid("\(what) has a '%' that is not followed by two hex digits")
            }
            bytes.append(high << 4 | low)
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw invalid("\(what) does not decode to UTF-8 text")
        }
        return text
    }

    /// Percent-encodes everything but RFC 3986's unreserved characters.
    static func percentEncode(_ text: String) -> String {
        var result = ""
        for byte in text.utf8 {
            let scalar = Unicode.Scalar(byte)
            if byte < 0x80, scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || "-._~".unicodeScalars.contains(scalar) {
                result.unicodeScalars.append(scalar)
            } else {
                result += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return result
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    private static func invalid(_ message: String) -> AMQPError {
        AMQPError(.invalidArgument, "invalid AMQP URI: " + message)
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
