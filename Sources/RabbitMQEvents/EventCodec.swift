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

/// JSON through Foundation's `JSONEncoder` and `JSONDecoder`, with explicit strategies:
///
/// - Keys: the Swift property names as they are (`orderID` stays `orderID`); use `CodingKeys`
///   for other spellings.
/// - Dates: ISO 8601 in UTC with milliseconds (`2026-11-21T12:00:01.234Z`); decoding also accepts
///   whole seconds (`2026-11-21T12:00:01Z`).
/// - Output: compact (no whitespace); the order of keys is unspecified.
public struct JSONEventCodec: EventCodec {
    public let contentType = "application/json"
    // Configured once and shared: Foundation's coders are safe to use from several threads
    // once their options are set.
    private let encoder: JSONEncoder
    private let decoder: JSONDecoder

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
            if let date = try? Date(text, strategy: Self.withMilliseconds) { return date }
            if let date = try? Date(text, strategy: Self.wholeSeconds) { return date }
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
    /// seconds truncate the binary value, printing 1.234 as `.233`); `nil` for a date beyond
    /// ISO 8601's four-digit years or not finite.
    static func format(_ date: Date) -> String? {
        let interval = date.timeIntervalSince1970
        // Years 0000 to 9999.
        guard interval >= -62_167_219_200, interval < 253_402_300_800,
            let milliseconds = Int64(exactly: (interval * 1000).rounded())
        else { return nil }
        let (seconds, fraction) = milliseconds.quotientAndRemainder(dividingBy: 1000)
        let whole = seconds - (fraction < 0 ? 1 : 0)
        let millis = (fraction + 1000) % 1000
        let base = Date(timeIntervalSince1970: Double(whole)).formatted(wholeSeconds)
        let digits = String(millis)
        return base.dropLast() + "." + String(repeating: "0", count: 3 - digits.count) + digits + "Z"
    }

    private static let withMilliseconds = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt)
    private static let wholeSeconds = Date.ISO8601FormatStyle(timeZone: .gmt)
}
