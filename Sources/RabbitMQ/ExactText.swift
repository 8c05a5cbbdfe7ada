/// Text as it travelled: a `String` when its bytes are valid UTF-8, otherwise the bytes
/// themselves, so that a Latin-1 header key or property from a legacy publisher is forwarded
/// unchanged rather than with U+FFFD in place of its accents.
///
/// The representation is canonical (valid UTF-8 is always `.utf8`), so equality and hashing
/// compare the bytes that travel.
enum ExactText: Sendable, Hashable {
    case utf8(String)
    case invalidUTF8([UInt8])

    init(_ string: String) {
        self = .utf8(string)
    }

    init(bytes: some Collection<UInt8>) {
        // Most wire text (message IDs, content types, routing keys) is ASCII, which is always
        // valid UTF-8: decoding it needs no validation. `String(validating:as:)` is generic code
        // the standard library does not specialise (a metadata lookup per call), so it is left
        // for the rest.
        if bytes.allSatisfy({ $0 < 0x80 }) {
            self = .utf8(String(decoding: bytes, as: UTF8.self))
        } else if let string = String(validating: bytes, as: UTF8.self) {
            self = .utf8(string)
        } else {
            self = .invalidUTF8(Array(bytes))
        }
    }

    /// The text; invalid sequences read as U+FFFD.
    var string: String {
        switch self {
        case .utf8(let string): string
        case .invalidUTF8(let bytes): String(decoding: bytes, as: UTF8.self)
        }
    }

    /// The exact bytes.
    var bytes: [UInt8] {
        switch self {
        case .utf8(let string): Array(string.utf8)
        case .invalidUTF8(let bytes): bytes
        }
    }

    /// How many bytes travel.
    var byteCount: Int {
        switch self {
        case .utf8(let string): string.utf8.count
        case .invalidUTF8(let bytes): bytes.count
        }
    }
}
