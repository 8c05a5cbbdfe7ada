import Foundation

/// Turns events into message bodies and back. ``JSONEventCodec`` is the default; plug in another
/// (Protocol Buffers, MessagePack, ...) by conforming to this protocol.
public protocol EventCodec: Sendable {
    /// The MIME type written to the message's `content-type` property.
    var contentType: String { get }
    /// Encodes an event into a message body.
    func encode<Event: AMQPEvent>(_ event: Event) throws -> [UInt8]
    /// Decodes a message body into an event of the given type.
    func decode<Event: AMQPEvent>(_ type: Event.Type, from body: [UInt8]) throws -> Event
}

/// JSON, the default codec: compact, keys as the Swift properties spell them (or their
/// `CodingKeys`), dates as ISO 8601 in UTC with milliseconds (`2026-11-21T12:00:01.234Z`;
/// decoding also accepts whole seconds and the other spellings Foundation's ISO 8601 parser
/// reads), `Data` as Base64.
///
/// It writes and reads the bytes itself, without building intermediate values, and costs a
/// fraction of Foundation's `JSONEncoder` and `JSONDecoder` for an event. Its output is JSON
/// that Foundation's decoder (or any other) reads, and it reads what ``FoundationJSONEventCodec``
/// and Foundation's encoder write: the two codecs can be mixed across services and versions.
/// Differences a reader could notice are only in spelling: keys come in the order the event
/// writes them (Foundation's order is unspecified) and `/` is not escaped.
///
/// A type whose `encode(to:)` uses the `Encoder` API out of order (writes into a container after
/// leaving it, or uses `superEncoder()`) is encoded through Foundation's `JSONEncoder` instead,
/// with the same result.
public struct JSONEventCodec: EventCodec {
    public let contentType = "application/json"
    /// For the rare out-of-order type; shared, as a codec is made wherever one is defaulted (per
    /// outbox message, say) and Foundation's coders are not free to create.
    private static let fallback = FoundationJSONEventCodec()

    /// The JSON codec.
    public init() {}

    public func encode<Event: AMQPEvent>(_ event: Event) throws -> [UInt8] {
        do {
            return try StreamingJSONEncoder.encode(event)
        } catch is NonSequentialEncoding {
            return try Self.fallback.encode(event)
        }
    }

    public func decode<Event: AMQPEvent>(_ type: Event.Type, from body: [UInt8]) throws -> Event {
        try TapeJSONDecoder.decode(type, from: body)
    }
}

/// The same JSON as ``JSONEventCodec``, made and read by Foundation's `JSONEncoder` and
/// `JSONDecoder` with explicit strategies: keys as the Swift property names are, dates as ISO
/// 8601 in UTC with milliseconds, compact output in no specified key order.
///
/// Use it where Foundation's exact behaviour matters more than the cost (``JSONEventCodec``
/// takes a fraction of its time per event); the two read each other's output.
public struct FoundationJSONEventCodec: EventCodec {
    public let contentType = "application/json"
    // Configured once and shared: Foundation's coders are safe to use from several threads
    // once their options are set.
    private let encoder: JSONEncoder
    private let decoder: JSONDecoder

    /// The JSON codec on Foundation's coders.
    public init() {
        encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .custom { date, encoder in
            guard let text = Self.format(date) else {
                // The seconds, not the date: Foundation's Date.description traps on infinite dates.
                throw EncodingError.invalidValue(
                    date.timeIntervalSince1970,
                    .init(
                        codingPath: encoder.codingPath,
                        debugDescription: "\(date.timeIntervalSince1970) s since 1970 is no moment ISO 8601 can write"))
            }
            var container = encoder.singleValueContainer()
            try container.encode(text)
        }
        decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            if let date = Self.parseDate(text) { return date }
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "'\(text)' is not an ISO 8601 date such as 2026-11-21T12:00:01.234Z")
        }
    }

    public func encode<Event: AMQPEvent>(_ event: Event) throws -> [UInt8] {
        Array(try encoder.encode(event))
    }

    public func decode<Event: AMQPEvent>(_ type: Event.Type, from body: [UInt8]) throws -> Event {
        try decoder.decode(type, from: Data(body))
    }

    /// `2026-11-21T12:00:01.234Z`, rounded to the nearest millisecond (Foundation's fractional
    /// seconds truncate the binary value, printing 1.234 as `.233`), by Foundation's formatter;
    /// `nil` for a date beyond ISO 8601's four-digit years or not finite.
    static func format(_ date: Date) -> String? {
        guard let milliseconds = ISO8601Milliseconds.milliseconds(of: date) else { return nil }
        let (seconds, fraction) = milliseconds.quotientAndRemainder(dividingBy: 1000)
        let whole = seconds - (fraction < 0 ? 1 : 0)
        let millis = (fraction + 1000) % 1000
        let base = Date(timeIntervalSince1970: Double(whole)).formatted(wholeSeconds)
        let digits = String(millis)
        return base.dropLast() + "." + String(repeating: "0", count: 3 - digits.count) + digits + "Z"
    }

    /// A date in ISO 8601 as Foundation's parser reads it, with or without fractional seconds.
    static func parseDate(_ text: String) -> Date? {
        if let date = try? Date(text, strategy: withMilliseconds) { return date }
        return try? Date(text, strategy: wholeSeconds)
    }

    private static let withMilliseconds = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt)
    private static let wholeSeconds = Date.ISO8601FormatStyle(timeZone: .gmt)
}
