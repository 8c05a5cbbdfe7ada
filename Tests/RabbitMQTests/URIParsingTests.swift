import Testing

@testable import RabbitMQ

@Suite("AMQP URI parsing")
struct URIParsingTests {
    typealias Configuration = AMQPConnection.Configuration

    struct Accepted: Sendable, CustomTestStringConvertible {
        let uri: String
        let host: String
        let port: Int
        let user: String
        let password: String
        let vhost: String
        let tls: Bool
        var testDescription: String { uri }
    }

    static let accepted: [Accepted] = [
        .init(uri: "amqp://", host: "localhost", port: 5672, user: "guest", password: "guest", vhost: "/", tls: false),
        .init(uri: "amqp://host", host: "host", port: 5672, user: "guest", password: "guest", vhost: "/", tls: false),
        .init(uri: "amqp://host/", host: "host", port: 5672, user: "guest", password: "guest", vhost: "", tls: false),
        .init(uri: "amqp://host/%2f", host: "host", port: 5672, user: "guest", password: "guest", vhost: "/", tls: false),
        .init(uri: "amqp://host/%2F", host: "host", port: 5672, user: "guest", password: "guest", vhost: "/", tls: false),
        .init(uri: "AMQP://Host:1234/v", host: "Host", port: 1234, user: "guest", password: "guest", vhost: "v", tls: false),
        .init(uri: "amqps://host", host: "host", port: 5671, user: "guest", password: "guest", vhost: "/", tls: true),
        .init(uri: "amqps://host:5999", host: "host", port: 5999, user: "guest", password: "guest", vhost: "/", tls: true),
        .init(uri: "amqp://u:p@h:1/v", host: "h", port: 1, user: "u", password: "p", vhost: "v", tls: false),
        .init(uri: "amqp://user@h", host: "h", port: 5672, user: "user", password: "", vhost: "/", tls: false),
        .init(uri: "amqp://:@h", host: "h", port: 5672, user: "", password: "", vhost: "/", tls: false),
        .init(uri: "amqp://u%40x:p%3Aw%2Fd@h/", host: "h", port: 5672, user: "u@x", password: "p:w/d", vhost: "", tls: false),
        .init(uri: "amqp://u:p@ss@h", host: "h", port: 5672, user: "u", password: "p@ss", vhost: "/", tls: false),
        .init(uri: "amqp://[::1]", host: "::1", port: 5672, user: "guest", password: "guest", vhost: "/", tls: false),
        .init(uri: "amqp://[::1]:5673/x", host: "::1", port: 5673, user: "guest", password: "guest", vhost: "x", tls: false),
        .init(uri: "amqp://u:p@[fe80::1:2]:99/%2fprod", host: "fe80::1:2", port: 99, user: "u", password: "p", vhost: "/prod", tls: false),
        .init(uri: "amqp://h/caf%C3%A9", host: "h", port: 5672, user: "guest", password: "guest", vhost: "café", tls: false),
        .init(uri: "amqp://h:65535", host: "h", port: 65535, user: "guest", password: "guest", vhost: "/", tls: false),
        .init(uri: "amqp://:5673", host: "localhost", port: 5673, user: "guest", password: "guest", vhost: "/", tls: false),
    ]

    @Test("accepted URIs", arguments: accepted)
    func accepts(_ expected: Accepted) throws {
        let configuration = try Configuration(url: expected.uri)
        #expect(configuration.host == expected.host)
        #expect(configuration.port == expected.port)
        #expect(configuration.user == expected.user)
        #expect(configuration.password == expected.password)
        #expect(configuration.virtualHost == expected.vhost)
        #expect((configuration.tls != nil) == expected.tls)
    }

    @Test func queryParameters() throws {
        let configuration = try Configuration(
            url: "amqp://h/?heartbeat=5&frame_max=8192&channel_max=10&connection_timeout=2500&auth_mechanism=external")
        #expect(configuration.heartbeat == 5)
        #expect(configuration.frameMax == 8192)
        #expect(configuration.channelMax == 10)
        #expect(configuration.connectionTimeout == .milliseconds(2500))
        #expect(configuration.authMechanism == .external)
    }

    @Test func defaults() throws {
        let configuration = try Configuration(url: "amqp://h")
        #expect(configuration.heartbeat == 60)
        #expect(configuration.frameMax == 131_072)
        #expect(configuration.channelMax == 0)
        #expect(configuration.authMechanism == .plain)
        #expect(configuration.connectionTimeout == .seconds(30))
    }

    @Test func heartbeatZeroTurnsHeartbeatsOff() throws {
        #expect(try Configuration(url: "amqp://h?heartbeat=0").heartbeat == 0)
    }

    @Test func tlsParameters() throws {
        let configuration = try Configuration(
            url: "amqps://h?cacertfile=%2Fetc%2Fca.pem&certfile=c.pem&keyfile=k.pem&verify=verify_none")
        #expect(configuration.tls?.caCertificateFile == "/etc/ca.pem")
        #expect(configuration.tls?.certificateFile == "c.pem")
        #expect(configuration.tls?.keyFile == "k.pem")
        #expect(configuration.tls?.verifyPeer == false)
        #expect(try Configuration(url: "amqps://h").tls?.verifyPeer == true)
    }

    struct Rejected: Sendable, CustomTestStringConvertible {
        let uri: String
        /// A fragment the error message must contain: it names what is wrong.
        let says: String
        var testDescription: String { uri }
    }

    static let rejected: [Rejected] = [
        .init(uri: "", says: "no scheme"),
        .init(uri: "localhost:5672", says: "no scheme"),
        .init(uri: "http://h", says: "unsupported scheme 'http'"),
        .init(uri: "amqp://h:0", says: "not from 1 to 65535"),
        .init(uri: "amqp://h:65536", says: "not from 1 to 65535"),
        .init(uri: "amqp://h:port", says: "port must be a number"),
        .init(uri: "amqp://h:", says: "port must be a number"),
        .init(uri: "amqp://h:-1", says: "port must be a number"),
        .init(uri: "amqp://::1", says: "in brackets"),
        .init(uri: "amqp://[::1", says: "no closing ']'"),
        .init(uri: "amqp://[zz]", says: "not an IPv6 address"),
        .init(uri: "amqp://[::1]x", says: "after the IPv6 address"),
        .init(uri: "amqp://h/a/b", says: "single path segment"),
        .init(uri: "amqp://h/%zz", says: "the vhost has a '%'"),
        .init(uri: "amqp://h/%4", says: "the vhost has a '%'"),
        .init(uri: "amqp://h/%C3", says: "the vhost does not decode to UTF-8"),
        .init(uri: "amqp://%zz@h", says: "the user name has a '%'"),
        .init(uri: "amqp://h#frag", says: "fragment"),
        .init(uri: "amqp://h?heartbeat", says: "has no value"),
        .init(uri: "amqp://h?heartbeat=x", says: "heartbeat 'x' must be a whole number"),
        .init(uri: "amqp://h?heartbeat=70000", says: "heartbeat '70000' must be a whole number from 0 to 65535"),
        .init(uri: "amqp://h?frame_max=100", says: "frame_max '100' must be a whole number from 4096"),
        .init(uri: "amqp://h?channel_max=-1", says: "channel_max '-1'"),
        .init(uri: "amqp://h?connection_timeout=0", says: "connection_timeout '0'"),
        .init(uri: "amqp://h?auth_mechanism=amqplain", says: "auth_mechanism 'amqplain' is not supported"),
        .init(uri: "amqp://h?heartbeat=1&heartbeat=2", says: "'heartbeat' is repeated"),
        .init(uri: "amqp://h?hearbeat=1", says: "unknown query parameter 'hearbeat'"),
        .init(uri: "amqp://h?cacertfile=x", says: "needs an amqps:// URI"),
        .init(uri: "amqps://h?verify=maybe", says: "verify 'maybe'"),
    ]

    @Test("rejected URIs", arguments: rejected)
    func rejects(_ case_: Rejected) {
        let error = #expect(throws: AMQPError.self) { try Configuration(url: case_.uri) }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.contains(case_.says) == true, "\(error?.message ?? "")")
    }

    @Test func passwordsNeverAppearInErrors() {
        for uri in ["amqp://user:s3cr3t", "amqp://user:s3cr3t@h:x", "amqp://user:s3cr3t@h/%zz", "amqp://user:s3cr3t%@h"] {
            let error = #expect(throws: AMQPError.self) { try Configuration(url: uri) }
            #expect(error.map { !"\($0)".contains("s3cr3t") } == true, "\(uri)")
        }
    }

    @Test func redactedURLHidesThePassword() throws {
        let configuration = try Configuration(url: "amqp://user:s3cr3t@[::1]:5673/%2f")
        #expect(configuration.redactedURL == "amqp://user:***@[::1]:5673/%2F")
    }
}

@Suite("Credentials stay out of descriptions")
struct CredentialRedactionTests {
    @Test func descriptionsDumpsAndDebugDescriptionsHideSecrets() throws {
        var configuration = try AMQPConnection.Configuration(
            url: "amqps://app:pa55-w0rd-secret@broker.example:5671/prod?cacertfile=/ca.pem")
        configuration.tls?.keyPassword = "key-passphrase-secret"
        var dumped = ""
        dump(configuration, to: &dumped)
        for text in [configuration.description, configuration.debugDescription, "\(configuration)", dumped,
                     String(reflecting: configuration), "\(configuration.tls!)"] {
            #expect(!text.contains("pa55-w0rd-secret"))
            #expect(!text.contains("key-passphrase-secret"))
        }
        #expect(configuration.description.contains("amqps://app:***@broker.example:5671/prod"))
    }
}

@Suite("TLS server name")
struct ServerNameIndicationTests {
    @Test func serverNameMustBeTheHost() throws {
        let same = try AMQPConnection.Configuration(url: "amqps://broker.example?server_name_indication=Broker.Example")
        #expect(same.host == "broker.example")
        let error = #expect(throws: AMQPError.self) {
            try AMQPConnection.Configuration(url: "amqps://10.0.0.5?server_name_indication=broker.example")
        }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.contains("server_name_indication") == true)
        #expect(throws: AMQPError.self) { try AMQPConnection.Configuration(url: "amqp://h?server_name_indication=h") }
    }
}
