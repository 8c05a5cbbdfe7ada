import struct Foundation.Date

/// An AMQP timestamp: a 64-bit count of whole seconds since 1970, held exactly as it travels.
///
/// The wire carries 64 bits without a stated sign; like the Java, Go and Python clients, the
/// library reads them as signed, so a publisher's `new Date(-1000)` is 1969 and not the year
/// 584 billion. Every value a peer sends is kept and re-sent unchanged; ``date`` is the
/// Foundation view (exact up to ±2^53 seconds, about 285 million years).
///
/// ```swift
/// let properties = BasicProperties(messageID: "order-1234", timestamp: .now)
/// let sentAt = delivery.properties.timestamp?.date
/// ```
public struct AMQPTimestamp: Sendable, Hashable, Comparable {
    /// The 64 bits as they travel.
    public var rawValue: UInt64

    /// The timestamp whose bits are `rawValue`.
    public init(rawValue: UInt64) {
        self.rawValue = rawValue
    }

    /// The timestamp `seconds` after (or, negative, before) 1970-01-01T00:00:00Z.
    public init(secondsSince1970 seconds: Int64) {
        rawValue = UInt64(bitPattern: seconds)
    }

    /// The whole second `date` falls in (rounded down: the wire has no fractions), or `nil` when
    /// `date` is not finite or lies beyond ±2^63 seconds.
    public init?(_ date: Date) {
        let seconds = date.timeIntervalSince1970.rounded(.down)
        guard let whole = Int64(exactly: seconds) else { return nil }
        self.init(secondsSince1970: whole)
    }

    /// The current second.
    public static var now: AMQPTimestamp {
        AMQPTimestamp(secondsSince1970: Int64(Date().timeIntervalSince1970.rounded(.down)))
    }

    /// Seconds since 1970, negative before it.
    public var secondsSince1970: Int64 { Int64(bitPattern: rawValue) }

    /// The moment as a `Date`.
    public var date: Date { Date(timeIntervalSince1970: Double(secondsSince1970)) }

    /// Earlier in time (by signed seconds, so 1969 comes before 1970).
    public static func < (lhs: AMQPTimestamp, rhs: AMQPTimestamp) -> Bool {
        lhs.secondsSince1970 < rhs.secondsSince1970
    }
}
