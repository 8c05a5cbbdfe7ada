import Foundation
import RabbitMQ

/// The dead letters of an ``EventDispatcher``'s queue (`<queue>.dead-letter`): list them, and
/// send them back to where they were first published once the cause is fixed (redrive).
///
/// ```swift
/// let deadLetters = DeadLetters(connection: connection, queue: "inventory")
/// for letter in try await deadLetters.list() {
///     print(letter.messageID ?? "-", letter.reason ?? "-", letter.error ?? "")
/// }
/// let sent = try await deadLetters.redrive()   // all of them, each confirmed before it leaves
/// ```
///
/// A redriven event goes to its original exchange with its original routing key, with every
/// property and header it had, less the dead-letter headers: it starts its life again at
/// attempt 1, and a handler's inbox still knows it by its message id. Letters the broker
/// dead-lettered itself (the queue's delivery limit) are redriven by their `x-death` record.
public struct DeadLetters: Sendable {
    /// One dead letter, as the dispatcher (or the broker) wrote it.
    public struct Letter: Sendable {
        /// The event's message id.
        public var messageID: String?
        /// The event's type name.
        public var eventType: String?
        /// Why: `unknown-type`, `undecodable`, `retries-exhausted`, or `delivery-limit` (the
        /// broker dead-lettered it after too many deliveries).
        public var reason: String?
        /// The last error, as the dispatcher described it.
        public var error: String?
        /// Attempts made before it was dead-lettered.
        public var attempts: Int?
        /// The exchange it was first published to.
        public var originalExchange: String?
        /// The routing key it was first published with.
        public var originalRoutingKey: String?
        /// When it was published (the `timestamp` property).
        public var timestamp: AMQPTimestamp?
        /// The body's size in bytes.
        public var bodySize: Int
        /// The whole message.
        public var properties: BasicProperties
    }

    /// Redriving stopped at a letter that could not be sent back.
    public struct RedriveError: Error, CustomStringConvertible {
        /// The letter's message id.
        public var messageID: String?
        /// Why.
        public var reason: String
        /// Letters sent back before it.
        public var sent: Int

        public var description: String {
            "dead letter \(messageID ?? "without a message id") could not be sent back (\(sent) were): \(reason)"
        }
    }

    /// The connection the dead letters are read and sent on.
    public let connection: AMQPConnection
    /// The dead-letter queue.
    public let deadLetterQueue: String

    /// The dead letters of the dispatcher that consumes `queue` (its `<queue>.dead-letter`).
    public init(connection: AMQPConnection, queue: String) {
        self.connection = connection
        self.deadLetterQueue = queue + ".dead-letter"
    }

    /// Up to `limit` dead letters, oldest first; they stay in the queue.
    public func list(limit: Int = 100) async throws -> [Letter] {
        // Taken without acknowledging and given back when the channel closes: a classic queue
        // puts them back where they were.
        try await connection.withChannel { channel in
            var letters: [Letter] = []
            while letters.count < limit, let delivery = try await channel.basicGet(queue: deadLetterQueue) {
                letters.append(Self.letter(delivery))
            }
            return letters
        }
    }

    /// Sends up to `limit` dead letters (all by default), oldest first, that `selected` accepts
    /// back to their original exchange: each is published with confirms and `mandatory`, and
    /// leaves the dead-letter queue only once the broker confirmed it. Returns how many were sent.
    ///
    /// - Throws: ``RedriveError`` at the first letter that cannot be sent back (no original
    ///   exchange recorded, no queue bound for it any more, refused by the broker); it stays in
    ///   the dead-letter queue, as does everything after it.
    @discardableResult
    public func redrive(
        limit: Int = .max, where selected: @Sendable (Letter) -> Bool = { _ in true }
    ) async throws -> Int {
        let channel = try await connection.openChannel()
        do {
            let sent = try await redrive(on: channel, limit: limit, where: selected)
            await channel.close()  // what was skipped goes back in place
            return sent
        } catch {
            await channel.close()
            throw error
        }
    }

    private func redrive(
        on channel: AMQPChannel, limit: Int, where selected: @Sendable (Letter) -> Bool
    ) async throws -> Int {
        try await channel.confirmSelect()
        var sent = 0
        while sent < limit, let delivery = try await channel.basicGet(queue: deadLetterQueue) {
            let letter = Self.letter(delivery)
            // Not selected: left unacknowledged, so the next get moves on; it goes back in place
            // when the channel closes.
            guard selected(letter) else { continue }
            guard let exchange = letter.originalExchange, let routingKey = letter.originalRoutingKey else {
                throw RedriveError(messageID: letter.messageID, reason: "it records no original exchange", sent: sent)
            }
            var properties = delivery.properties
            properties.headers = Self.withoutDeadLetterHeaders(properties.headers ?? [:])
            do {
                try await channel.publish(
                    delivery.body, exchange: exchange, routingKey: routingKey, mandatory: true, properties: properties)
            } catch {
                throw RedriveError(messageID: letter.messageID, reason: "\(error)", sent: sent)
            }
            try await delivery.ack()
            sent += 1
        }
        return sent
    }

    /// Reads a dead letter's headers: the dispatcher's, else the broker's `x-death` record.
    static func letter(_ delivery: AMQPDelivery) -> Letter {
        let headers = delivery.properties.headers ?? [:]
        typealias Header = EventDispatcher.DeadLetterHeader
        var letter = Letter(
            messageID: delivery.properties.messageID, eventType: delivery.properties.type,
            reason: headers[Header.reason]?.stringValue, error: headers[Header.error]?.stringValue,
            attempts: headers[Header.attempts]?.int64Value.map { Int(clamping: $0) },
            originalExchange: headers[Header.exchange]?.stringValue,
            originalRoutingKey: headers[Header.routingKey]?.stringValue,
            timestamp: delivery.properties.timestamp, bodySize: delivery.body.count, properties: delivery.properties)
        if letter.originalExchange == nil, let death = headers["x-death"]?.arrayValue?.first?.tableValue {
            // Dead-lettered by the broker: the first x-death record is where it was rejected.
            letter.originalExchange = death["exchange"]?.stringValue
            letter.originalRoutingKey = death["routing-keys"]?.arrayValue?.first?.stringValue
            let reason = death["reason"]?.stringValue
            letter.reason = reason == "delivery_limit" ? "delivery-limit" : reason
            letter.attempts = death["count"]?.int64Value.map { Int(clamping: $0) }
        }
        return letter
    }

    /// The headers without what dead-lettering added (the dispatcher's and the broker's).
    static func withoutDeadLetterHeaders(_ headers: FieldTable) -> FieldTable {
        FieldTable(
            headers.entries.filter { entry in
                !entry.key.hasPrefix("x-dead-letter-") && !["x-death", "x-first-death-exchange",
                    "x-first-death-queue", "x-first-death-reason", "x-last-death-exchange", "x-last-death-queue",
                    "x-last-death-reason", "x-delivery-count"].contains(entry.key)
            })
    }
}
