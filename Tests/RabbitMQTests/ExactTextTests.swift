import Testing

@testable import RabbitMQ

/// Text read from the wire keeps its exact bytes: valid UTF-8 becomes a `String`, anything else
/// stays bytes. The ASCII fast path must decide exactly as full validation does.
@Suite("Exact text from received bytes")
struct ExactTextTests {
    static let samples: [[UInt8]] = [
        [],
        Array("msg-0000001234".utf8),
        Array("application/json".utf8),
        [0x00, 0x7F, 0x41],  // ASCII control characters are valid UTF-8
        Array("café ✓ 🐇".utf8),  // two-, three- and four-byte sequences
        Array("a".utf8) + [0xE9],  // Latin-1 é: invalid
        [0xC0, 0x80],  // overlong NUL
        [0xED, 0xA0, 0x80],  // an encoded surrogate
        [0xF4, 0x90, 0x80, 0x80],  // beyond U+10FFFF
        Array("ok".utf8) + [0xE2, 0x9C],  // truncated at the end
        Array(repeating: UInt8(ascii: "x"), count: 300) + [0x80],  // invalid after a long ASCII run
    ]

    @Test(arguments: samples)
    func decidesAsFullValidationDoes(bytes: [UInt8]) {
        let expected: ExactText =
            if let string = String(validating: bytes, as: UTF8.self) { .utf8(string) } else { .invalidUTF8(bytes) }
        let fromArray = ExactText(bytes: bytes)
        let fromBuffer = bytes.withUnsafeBytes { ExactText(bytes: $0) }
        #expect(fromArray == expected)
        #expect(fromBuffer == expected)
        #expect(fromBuffer.bytes == bytes)
    }
}
