internal import CRabbitMQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The properties of a channel's last content header, kept with the bytes they came from: a
/// stream of messages published with the same properties (a content type and delivery mode,
/// say) decodes them once, and every delivery shares one ``BasicProperties`` storage.
///
/// The bytes decide: equal encoded properties decode to equal values, so reusing the value for
/// equal bytes changes nothing a reader can see.
struct RecentProperties {
    /// The encoded properties of the last header, if not longer than ``largestKept``.
    private var raw: [UInt8] = []
    private var properties: BasicProperties?

    /// Encoded properties longer than this are decoded every time rather than kept: large
    /// headers usually differ from message to message anyway.
    static let largestKept = 1024

    /// The properties of a content header librabbitmq decoded (`decoded`, from the `encoded`
    /// bytes): the kept value if they are the same bytes, else a new copy (see
    /// ``BasicProperties/init(copying:)`` for what throws).
    mutating func properties(encoded bytes: amqp_bytes_t, decoded: amqp_basic_properties_t) throws -> BasicProperties {
        let encoded = UnsafeRawBufferPointer(bytes)
        if let properties, encoded.count == raw.count,
            raw.withUnsafeBytes({ kept in
                encoded.isEmpty || memcmp(kept.baseAddress!, encoded.baseAddress!, encoded.count) == 0
            })
        {
            return properties
        }
        let decoded = try BasicProperties(copying: decoded)
        if encoded.count <= Self.largestKept {
            raw.removeAll(keepingCapacity: true)
            raw.append(contentsOf: encoded)
            properties = decoded
        } else {
            properties = nil
        }
        return decoded
    }
}
