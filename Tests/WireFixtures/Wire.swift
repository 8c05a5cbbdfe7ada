/// AMQP 0-9-1 values encoded by hand from the specification (with RabbitMQ's field types), not
/// by librabbitmq: what another client would put on the wire, for tests that compare bytes.
public enum Wire {
    public static func u16(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xFF)] }
    public static func u32(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8((value >> (24 - 8 * $0)) & 0xFF) } }
    public static func u64(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8((value >> (56 - 8 * $0)) & 0xFF) } }

    /// A short string: one length octet, then the bytes.
    public static func shortString(_ bytes: [UInt8]) -> [UInt8] { [UInt8(bytes.count)] + bytes }
    /// A long string: a 4-byte length, then the bytes.
    public static func longString(_ bytes: [UInt8]) -> [UInt8] { u32(UInt32(bytes.count)) + bytes }

    /// A field value: its type octet, then `payload`.
    public static func field(_ type: Character, _ payload: [UInt8] = []) -> [UInt8] { [type.asciiValue!] + payload }
    /// `S` with exactly `bytes`.
    public static func string(_ bytes: [UInt8]) -> [UInt8] { field("S", longString(bytes)) }
    /// `S` with the UTF-8 of `text`.
    public static func string(_ text: String) -> [UInt8] { string(Array(text.utf8)) }
    /// `F`, a nested table.
    public static func tableField(_ entries: [(key: [UInt8], value: [UInt8])]) -> [UInt8] { field("F", table(entries)) }
    /// `A`, an array of encoded field values.
    public static func arrayField(_ values: [[UInt8]]) -> [UInt8] {
        let body = values.flatMap { $0 }
        return field("A", u32(UInt32(body.count)) + body)
    }

    /// A field table: a 4-byte length, then each key (a short string) and value, in order.
    public static func table(_ entries: [(key: [UInt8], value: [UInt8])]) -> [UInt8] {
        let body = entries.flatMap { shortString($0.key) + $0.value }
        return u32(UInt32(body.count)) + body
    }

    /// `café` in Latin-1: not valid UTF-8.
    public static let latin1Cafe: [UInt8] = [0x63, 0x61, 0x66, 0xE9]
}

/// The `basic` class properties of a content header, encoded by hand: the 16-bit flags word, then
/// the fields that are present, in the order of the specification.
public struct WireProperties: Sendable {
    public var contentType: [UInt8]?
    public var contentEncoding: [UInt8]?
    /// An encoded table (``Wire/table(_:)``).
    public var headers: [UInt8]?
    public var deliveryMode: UInt8?
    public var priority: UInt8?
    public var correlationID: [UInt8]?
    public var replyTo: [UInt8]?
    public var expiration: [UInt8]?
    public var messageID: [UInt8]?
    public var timestamp: UInt64?
    public var type: [UInt8]?
    public var userID: [UInt8]?
    public var appID: [UInt8]?
    public var clusterID: [UInt8]?

    public init() {}

    /// The flags word and the fields.
    public var encoded: [UInt8] {
        var flags: UInt16 = 0
        var fields: [UInt8] = []
        func text(_ value: [UInt8]?, bit: UInt16) {
            guard let value else { return }
            flags |= 1 << bit
            fields += Wire.shortString(value)
        }
        text(contentType, bit: 15)
        text(contentEncoding, bit: 14)
        if let headers { flags |= 1 << 13; fields += headers }
        if let deliveryMode { flags |= 1 << 12; fields.append(deliveryMode) }
        if let priority { flags |= 1 << 11; fields.append(priority) }
        text(correlationID, bit: 10)
        text(replyTo, bit: 9)
        text(expiration, bit: 8)
        text(messageID, bit: 7)
        if let timestamp { flags |= 1 << 6; fields += Wire.u64(timestamp) }
        text(type, bit: 5)
        text(userID, bit: 4)
        text(appID, bit: 3)
        text(clusterID, bit: 2)
        return Wire.u16(flags) + fields
    }
}
