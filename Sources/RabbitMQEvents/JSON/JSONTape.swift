import Foundation

/// A JSON text indexed in one pass: every value becomes a ``Token`` (in document order, an
/// object's keys before their values) that points back into the bytes, so decoding reads a
/// value's bytes only when the `Decodable` type asks for it.
///
/// The pass checks the structure as Foundation's `JSONDecoder` does, no more and no less, so the
/// two accept the same texts: brackets, commas and colons, literals, keys in quotes, at most 512
/// levels of nesting, nothing but whitespace after the value; a comma after the last entry and a
/// UTF-8 byte-order mark are allowed. Like Foundation, it checks a string's escapes, control
/// characters and UTF-8, and a number's grammar (no leading zeros, `+`, or bare `.`), only when
/// that value is read (``decodedString(at:)``, ``validatedNumber(at:)``): a malformed value
/// nobody reads does not fail the message.
final class JSONTape {
    enum Kind: UInt8 {
        case object, array, string, number, `true`, `false`, null
    }

    /// One value: for a string its bytes between the quotes, for a number its text; for an
    /// object or array its entries (an object's as key, value, key, value, ...) follow it.
    struct Token {
        var kind: Kind
        /// A string with anything but printable ASCII (a backslash, a control character, UTF-8 to
        /// check), or a number that is not a plain integer (`-?(0|[1-9][0-9]*)`).
        var flagged: Bool
        var start: Int32
        var end: Int32
        /// The index of the token after this value and everything inside it.
        var next: Int32
        /// Entries of an object (key-value pairs) or elements of an array.
        var count: Int32
        /// The container this value is in; -1 for the top-level value.
        var parent: Int32
    }

    static let maximumDepth = 512

    let bytes: [UInt8]
    /// Written once by the parse; a constant, so reading it costs no exclusivity check.
    let tokens: [Token]
    // Unchecked exclusivity: a tape belongs to one decode call on one thread, and every access
    // is a plain read or write of the integer.
    /// Where the last key lookup ended (the key token after the value found): types read keys in
    /// the order they were written, so the next lookup usually matches here at once.
    @exclusivity(unchecked) var hint = 0

    /// Parses `bytes`.
    /// - Throws: `DecodingError.dataCorrupted` naming the offset of the first error.
    init(_ bytes: [UInt8]) throws {
        guard bytes.count < Int32.max else { throw Self.corrupted("The JSON text is larger than 2 GiB") }
        self.bytes = bytes
        var tokens: [Token] = []
        tokens.reserveCapacity(bytes.count / 6 + 4)
        try bytes.withUnsafeBufferPointer { buffer in
            var parser = Parser(bytes: buffer)
            try parser.parse(into: &tokens)
        }
        self.tokens = tokens
    }

    static func corrupted(_ description: String) -> DecodingError {
        .dataCorrupted(.init(codingPath: [], debugDescription: "The given data was not valid JSON: \(description)."))
    }

    private struct Parser {
        let bytes: UnsafeBufferPointer<UInt8>
        var position = 0

        mutating func parse(into tokens: inout [Token]) throws {
            if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF { position = 3 }
            try value(into: &tokens, parent: -1, depth: 0)
            skipWhitespace()
            guard position == bytes.count else { throw error("unexpected text after the value") }
        }

        private func error(_ what: String) -> DecodingError {
            JSONTape.corrupted("\(what) at byte \(position)")
        }

        private mutating func skipWhitespace() {
            while position < bytes.count {
                switch bytes[position] {
                case 0x20, 0x0A, 0x0D, 0x09: position += 1
                default: return
                }
            }
        }

        private mutating func value(into tokens: inout [Token], parent: Int32, depth: Int) throws {
            skipWhitespace()
            guard position < bytes.count else { throw error("unexpected end of the text") }
            switch bytes[position] {
            case UInt8(ascii: "{"): try container(.object, into: &tokens, parent: parent, depth: depth)
            case UInt8(ascii: "["): try container(.array, into: &tokens, parent: parent, depth: depth)
            case UInt8(ascii: "\""): try string(into: &tokens, parent: parent)
            case UInt8(ascii: "t"): try literal("true", .true, into: &tokens, parent: parent)
            case UInt8(ascii: "f"): try literal("false", .false, into: &tokens, parent: parent)
            case UInt8(ascii: "n"): try literal("null", .null, into: &tokens, parent: parent)
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try number(into: &tokens, parent: parent)
            default: throw error("unexpected character '\(Unicode.Scalar(bytes[position]))'")
            }
        }

        private mutating func container(_ kind: Kind, into tokens: inout [Token], parent: Int32, depth: Int) throws {
            guard depth < JSONTape.maximumDepth else { throw error("nesting deeper than \(JSONTape.maximumDepth) levels") }
            let index = tokens.count
            let me = Int32(index)
            tokens.append(Token(kind: kind, flagged: false, start: Int32(position), end: 0, next: 0, count: 0, parent: parent))
            position += 1
            let closer = kind == .object ? UInt8(ascii: "}") : UInt8(ascii: "]")
            var count: Int32 = 0
            skipWhitespace()
            if position < bytes.count, bytes[position] == closer {
                position += 1
            } else {
                while true {
                    if kind == .object {
                        skipWhitespace()
                        guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else {
                            throw error("expected a key in quotes")
                        }
                        try string(into: &tokens, parent: me)
                        skipWhitespace()
                        guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else { throw error("expected ':'") }
                        position += 1
                    }
                    try value(into: &tokens, parent: me, depth: depth + 1)
                    count += 1
                    skipWhitespace()
                    guard position < bytes.count else { throw error("unexpected end of the text") }
                    if bytes[position] == UInt8(ascii: ",") {
                        position += 1
                        skipWhitespace()
                        if position < bytes.count, bytes[position] == closer {  // a trailing comma
                            position += 1
                            break
                        }
                    } else if bytes[position] == closer {
                        position += 1
                        break
                    } else {
                        throw error(kind == .object ? "expected ',' or '}'" : "expected ',' or ']'")
                    }
                }
            }
            tokens[index].end = Int32(position)
            tokens[index].count = count
            tokens[index].next = Int32(tokens.count)
        }

        private mutating func literal(_ text: StaticString, _ kind: Kind, into tokens: inout [Token], parent: Int32) throws {
            let start = position
            let length = text.utf8CodeUnitCount
            guard bytes.count - position >= length else { throw error("unexpected end of the text") }
            for offset in 0..<length where bytes[position + offset] != text.utf8Start[offset] {
                throw error("unexpected character")
            }
            position += length
            append(kind, flagged: false, start, position, into: &tokens, parent: parent)
        }

        /// A number's extent: the digits, signs, points and exponent marks that follow; its grammar
        /// is checked when it is read.
        private mutating func number(into tokens: inout [Token], parent: Int32) throws {
            let start = position
            var plainInteger = true
            position += 1
            while position < bytes.count {
                let byte = bytes[position]
                if byte &- UInt8(ascii: "0") < 10 {
                    position += 1
                } else if byte == UInt8(ascii: ".") || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-")
                    || byte | 0x20 == UInt8(ascii: "e")
                {
                    plainInteger = false
                    position += 1
                } else {
                    break
                }
            }
            // Plain: -?(0|[1-9][0-9]*), read without further checks.
            let digits = bytes[start] == UInt8(ascii: "-") ? start + 1 : start
            let plain = plainInteger && position > digits && (bytes[digits] != UInt8(ascii: "0") || position == digits + 1)
            append(.number, flagged: !plain, start, position, into: &tokens, parent: parent)
        }

        /// A string's extent, up to the first quote no backslash escapes; escapes, control
        /// characters and UTF-8 are checked when it is read.
        private mutating func string(into tokens: inout [Token], parent: Int32) throws {
            position += 1  // the opening quote
            let start = position
            var flagged = false
            while true {
                guard position < bytes.count else { throw error("unterminated string") }
                let byte = bytes[position]
                if byte == UInt8(ascii: "\"") { break }
                if byte == UInt8(ascii: "\\") {
                    flagged = true
                    position += 1
                    guard position < bytes.count else { throw error("unterminated string") }
                    if bytes[position] == UInt8(ascii: "u") {
                        // Four more bytes, none of them the closing quote.
                        guard bytes.count - position > 4,
                            !bytes[(position + 1)...(position + 4)].contains(UInt8(ascii: "\""))
                        else { throw error("a \\u escape without 4 hex digits") }
                        position += 4
                    }
                } else if byte < 0x20 || byte >= 0x80 {
                    flagged = true
                }
                position += 1
            }
            append(.string, flagged: flagged, start, position, into: &tokens, parent: parent)
            position += 1  // the closing quote
        }

        private func append(_ kind: Kind, flagged: Bool, _ start: Int, _ end: Int, into tokens: inout [Token], parent: Int32) {
            tokens.append(
                Token(
                    kind: kind, flagged: flagged, start: Int32(start), end: Int32(end), next: Int32(tokens.count + 1), count: 0,
                    parent: parent))
        }
    }

    static func hexDigit(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    // MARK: - Reading tokens

    /// The text of a string token: its UTF-8 checked, its escapes resolved.
    /// - Throws: `DecodingError.dataCorrupted` for invalid UTF-8, a control character, or a
    ///   malformed escape.
    func decodedString(at index: Int) throws -> String {
        let token = tokens[index]
        return try bytes.withUnsafeBufferPointer { buffer in
            let raw = UnsafeBufferPointer(rebasing: buffer[Int(token.start)..<Int(token.end)])
            if !token.flagged { return String(decoding: raw, as: UTF8.self) }  // printable ASCII
            if !raw.contains(where: { $0 == UInt8(ascii: "\\") || $0 < 0x20 }), let text = String(validating: raw, as: UTF8.self) {
                return text
            }
            return try Self.unescape(raw, at: Int(token.start))
        }
    }

    /// Resolves a string's escapes, checking everything the scan left: the escapes themselves
    /// (surrogates paired), raw control characters, and UTF-8.
    private static func unescape(_ raw: UnsafeBufferPointer<UInt8>, at offset: Int) throws -> String {
        var output: [UInt8] = []
        output.reserveCapacity(raw.count)
        var index = 0
        func failure(_ what: String) -> DecodingError {
            JSONTape.corrupted("\(what) in the string at byte \(offset + index)")
        }
        func unit(at start: Int) throws -> UInt32 {
            var value: UInt32 = 0
            for position in start..<start + 4 {
                guard position < raw.count, let digit = hexDigit(raw[position]) else { throw failure("a \\u escape without 4 hex digits") }
                value = value << 4 | UInt32(digit)
            }
            return value
        }
        while index < raw.count {
            let byte = raw[index]
            guard byte == UInt8(ascii: "\\") else {
                guard byte >= 0x20 else { throw failure("an unescaped control character") }
                output.append(byte)
                index += 1
                continue
            }
            let code = raw[index + 1]  // the scan saw a byte after every backslash
            switch code {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): output.append(code)
            case UInt8(ascii: "b"): output.append(0x08)
            case UInt8(ascii: "f"): output.append(0x0C)
            case UInt8(ascii: "n"): output.append(0x0A)
            case UInt8(ascii: "r"): output.append(0x0D)
            case UInt8(ascii: "t"): output.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try unit(at: index + 2)
                if (0xD800..<0xDC00).contains(scalar) {
                    guard index + 7 < raw.count, raw[index + 6] == UInt8(ascii: "\\"), raw[index + 7] == UInt8(ascii: "u") else {
                        throw failure("a high surrogate without its low surrogate")
                    }
                    let low = try unit(at: index + 8)
                    guard (0xDC00..<0xE000).contains(low) else { throw failure("a high surrogate without its low surrogate") }
                    scalar = 0x10000 + (scalar - 0xD800) << 10 + (low - 0xDC00)
                    index += 6
                }
                guard let character = Unicode.Scalar(scalar) else { throw failure("a low surrogate without its high surrogate") }
                UTF8.encode(character) { output.append($0) }
                index += 4
            default:
                throw failure("an unknown escape")
            }
            index += 2
        }
        guard let text = String(validating: output, as: UTF8.self) else { throw failure("text that is not UTF-8") }
        return text
    }

    /// Whether a string token's text is exactly `key`: compared as bytes when it is printable
    /// ASCII, else read first; an unreadable key matches nothing.
    func string(at index: Int, equals key: String) -> Bool {
        let token = tokens[index]
        guard !token.flagged else { return (try? decodedString(at: index)) == key }
        var key = key
        return key.withUTF8 { keyBytes in
            guard keyBytes.count == Int(token.end - token.start) else { return false }
            return bytes.withUnsafeBufferPointer { buffer in
                keyBytes.count == 0 || memcmp(keyBytes.baseAddress!, buffer.baseAddress! + Int(token.start), keyBytes.count) == 0
            }
        }
    }

    /// Calls `body` with a token's bytes (a string's between its quotes, still escaped).
    func withBytes<Result>(at index: Int, _ body: (UnsafeBufferPointer<UInt8>) throws -> Result) rethrows -> Result {
        let token = tokens[index]
        return try bytes.withUnsafeBufferPointer { buffer in
            try body(UnsafeBufferPointer(rebasing: buffer[Int(token.start)..<Int(token.end)]))
        }
    }

    /// A number token's text after checking RFC 8259's grammar:
    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    /// - Throws: `DecodingError.dataCorrupted` for anything else (`01`, `+1`, `.5`, `1.`, `-`).
    func validatedNumber(at index: Int) throws -> String {
        try withBytes(at: index) { text in
            var position = 0
            func digits() -> Int {
                let start = position
                while position < text.count, text[position] &- UInt8(ascii: "0") < 10 { position += 1 }
                return position - start
            }
            if text[0] == UInt8(ascii: "-") { position = 1 }
            let integerStart = position
            var valid = digits() > 0 && (text[integerStart] != UInt8(ascii: "0") || position == integerStart + 1)
            if valid, position < text.count, text[position] == UInt8(ascii: ".") {
                position += 1
                valid = digits() > 0
            }
            if valid, position < text.count, text[position] | 0x20 == UInt8(ascii: "e") {
                position += 1
                if position < text.count, text[position] == UInt8(ascii: "+") || text[position] == UInt8(ascii: "-") { position += 1 }
                valid = digits() > 0
            }
            let string = String(decoding: text, as: UTF8.self)
            guard valid, position == text.count else {
                throw JSONTape.corrupted("'\(string)' at byte \(tokens[index].start) is not a number")
            }
            return string
        }
    }
}
