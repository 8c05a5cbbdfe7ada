/// Message properties other clients send that a naive client mangles or crashes on: every one
/// must be received, inspected, republished and dead-lettered unchanged.
public struct HostileMessage: Sendable, CustomStringConvertible {
    public let name: String
    /// The encoded properties (``WireProperties/encoded``).
    public let properties: [UInt8]
    /// Whether RabbitMQ takes it from a publisher (it insists that `user-id` is the publisher's user).
    public let rabbitMQTakesIt: Bool

    public var description: String { name }
}

public enum HostileMessages {
    /// Timestamps at the edges of the 64 bits: 1970, a second before it (Java's `new Date(-1000)`
    /// is -1 s), 2^63 and 2^64 - 1, as the property and as a header.
    public static let timestamps: [HostileMessage] = [0, UInt64(bitPattern: -1), UInt64(bitPattern: -1000), 1 << 63, .max].map {
        var properties = WireProperties()
        properties.timestamp = $0
        properties.headers = Wire.table([(Array("sent".utf8), Wire.field("T", Wire.u64($0)))])
        return HostileMessage(name: "timestamp \($0)", properties: properties.encoded, rabbitMQTakesIt: true)
    }

    /// Latin-1 bytes in every text property but `user-id`, in a header key, a long-string value,
    /// a nested key and an array element.
    public static let invalidUTF8: HostileMessage = {
        let cafe = Wire.latin1Cafe
        var properties = WireProperties()
        properties.contentType = cafe
        properties.contentEncoding = cafe
        properties.correlationID = cafe
        properties.replyTo = cafe
        properties.expiration = Array("60000".utf8)
        properties.messageID = cafe
        properties.type = cafe
        properties.appID = cafe
        properties.clusterID = cafe
        properties.headers = Wire.table([
            (cafe, Wire.string("key")),
            (Array("value".utf8), Wire.string(cafe)),
            (Array("nested".utf8), Wire.tableField([(cafe, Wire.string(cafe))])),
            (Array("list".utf8), Wire.arrayField([Wire.string(cafe), Wire.string("ok")])),
        ])
        return HostileMessage(name: "invalid UTF-8", properties: properties.encoded, rabbitMQTakesIt: true)
    }()

    /// A Latin-1 `user-id`: only a peer that is not RabbitMQ sends it.
    public static let invalidUTF8UserID: HostileMessage = {
        var properties = WireProperties()
        properties.userID = Wire.latin1Cafe
        return HostileMessage(name: "invalid UTF-8 user-id", properties: properties.encoded, rabbitMQTakesIt: false)
    }()

    /// Tables `depth` levels deep inside the header `root`, or arrays when `arrays` is set.
    public static func nested(_ depth: Int, arrays: Bool = false) -> HostileMessage {
        var value = Wire.field("I", Wire.u32(7))
        for _ in 0..<depth {
            value = arrays ? Wire.arrayField([value]) : Wire.tableField([(Array("n".utf8), value)])
        }
        var properties = WireProperties()
        properties.headers = Wire.table([(Array("root".utf8), value)])
        return HostileMessage(
            name: "\(depth) levels of \(arrays ? "arrays" : "tables")", properties: properties.encoded, rabbitMQTakesIt: true)
    }

    /// 10,000 header keys.
    public static let manyKeys: HostileMessage = {
        var properties = WireProperties()
        properties.headers = Wire.table((0..<10_000).map { (Array("k\($0)".utf8), Wire.field("V")) })
        return HostileMessage(name: "10,000 header keys", properties: properties.encoded, rabbitMQTakesIt: true)
    }()

    /// The same key twice, at the top and in a nested table, with the later value different.
    public static let duplicateKeys: HostileMessage = {
        var properties = WireProperties()
        properties.headers = Wire.table([
            (Array("tenant".utf8), Wire.string("eu")),
            (Array("other".utf8), Wire.field("b", [0xFF])),
            (Array("tenant".utf8), Wire.string("us")),
            (Array("nested".utf8), Wire.tableField([(Array("a".utf8), Wire.field("t", [1])), (Array("a".utf8), Wire.field("t", [0]))])),
        ])
        return HostileMessage(name: "duplicate keys", properties: properties.encoded, rabbitMQTakesIt: true)
    }()

    /// Every field type, with the values that need care: a negative decimal, `L` at 2^64 - 1,
    /// the extremes of each integer, a void, raw bytes, the highest priority.
    public static let everyType: HostileMessage = {
        var properties = WireProperties()
        properties.deliveryMode = 2
        properties.priority = 255
        properties.headers = Wire.table([
            (Array("t".utf8), Wire.field("t", [1])),
            (Array("b".utf8), Wire.field("b", [0x80])),
            (Array("B".utf8), Wire.field("B", [0xFF])),
            (Array("s".utf8), Wire.field("s", Wire.u16(0x8000))),
            (Array("u".utf8), Wire.field("u", Wire.u16(0xFFFF))),
            (Array("I".utf8), Wire.field("I", Wire.u32(0x8000_0000))),
            (Array("i".utf8), Wire.field("i", Wire.u32(0xFFFF_FFFF))),
            (Array("l".utf8), Wire.field("l", Wire.u64(1 << 63))),
            (Array("L".utf8), Wire.field("L", Wire.u64(.max))),
            (Array("f".utf8), Wire.field("f", Wire.u32(Float(-1.5).bitPattern))),
            (Array("d".utf8), Wire.field("d", Wire.u64(Double.leastNonzeroMagnitude.bitPattern))),
            (Array("D".utf8), Wire.field("D", [2] + Wire.u32(UInt32(bitPattern: -12345)))),
            (Array("x".utf8), Wire.field("x", Wire.longString([0, 0xFF, 0xC3]))),
            (Array("V".utf8), Wire.field("V")),
            (Array("empty".utf8), Wire.tableField([])),
            (Array("".utf8), Wire.arrayField([])),
        ])
        return HostileMessage(name: "every type", properties: properties.encoded, rabbitMQTakesIt: true)
    }()

    /// Everything above that must come out as it went in.
    public static let all: [HostileMessage] =
        timestamps + [invalidUTF8, invalidUTF8UserID, nested(150), nested(150, arrays: true), manyKeys, duplicateKeys, everyType]

    /// Deeper than the client holds (its limit is 256 levels): rejected, never changed.
    public static let tooDeep = nested(257)
}
