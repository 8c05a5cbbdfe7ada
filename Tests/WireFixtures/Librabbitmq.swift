public import CRabbitMQ

/// librabbitmq's own content-header codec, for tests that feed it bytes from ``Wire`` and compare
/// what it encodes with them.
public enum Librabbitmq {
    /// The release loaded, e.g. `(0, 11)`.
    public static var version: (major: UInt32, minor: UInt32) {
        let number = amqp_version_number()
        return (number >> 24, (number >> 16) & 0xFF)
    }

    /// librabbitmq 0.14 and later refuse to decode tables nested more than 100 levels deep
    /// (0.11 decodes any depth): such a message fails the whole connection before the client
    /// sees it.
    public static var refusesDeepNesting: Bool { version.major > 0 || version.minor >= 14 }

    /// Whether librabbitmq decodes `message` at all (see ``refusesDeepNesting``).
    public static func decodes(_ message: HostileMessage) -> Bool {
        (try? withDecodedProperties(message.properties) { _ in true }) ?? false
    }

    /// librabbitmq refused the bytes (the status is an `AMQP_STATUS_*` value).
    public struct Failure: Error {
        public let status: Int32
    }

    /// Decodes `properties` (``WireProperties/encoded``) as librabbitmq decodes a content header,
    /// and hands the result to `body` while its memory lives.
    public static func withDecodedProperties<T>(
        _ properties: [UInt8], _ body: (amqp_basic_properties_t) throws -> T
    ) throws -> T {
        var pool = amqp_pool_t()
        init_amqp_pool(&pool, 4096)
        defer { empty_amqp_pool(&pool) }
        var bytes = properties
        var decoded: UnsafeMutableRawPointer?
        let status = bytes.withUnsafeMutableBytes {
            amqp_decode_properties(60, &pool, amqp_bytes_t(len: $0.count, bytes: $0.baseAddress), &decoded)
        }
        guard status == 0, let decoded else { throw Failure(status: status) }
        return try body(decoded.assumingMemoryBound(to: amqp_basic_properties_t.self).pointee)
    }

    /// Encodes `properties` as librabbitmq puts them in a content header.
    public static func encode(_ properties: amqp_basic_properties_t) throws -> [UInt8] {
        var properties = properties
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        let length = buffer.withUnsafeMutableBytes {
            amqp_encode_properties(60, &properties, amqp_bytes_t(len: $0.count, bytes: $0.baseAddress))
        }
        guard length >= 0 else { throw Failure(status: Int32(length)) }
        return Array(buffer.prefix(Int(length)))
    }
}
