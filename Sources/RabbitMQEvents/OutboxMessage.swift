import Foundation
import RabbitMQ

/// An event written to an outbox, waiting for ``OutboxRelay`` to publish it: everything the
/// publish needs, encoded when the event was written.
public struct OutboxMessage: Sendable, Hashable {
    /// Its place in the outbox: the relay publishes in this order (the commit order).
    public var sequence: Int64
    /// The message id, stable across republishes: a consumer's inbox recognises a second copy.
    public var messageID: String
    /// The exchange to publish to.
    public var exchange: String
    /// The routing key.
    public var routingKey: String
    /// The event's type name (the `type` property).
    public var eventType: String
    /// The body's MIME type (the `content-type` property).
    public var contentType: String
    /// The event's partition key, sent in ``EventHeader/partitionKey``.
    public var partitionKey: String?
    /// The encoded event.
    public var body: [UInt8]
    /// When it was written (the `timestamp` property).
    public var createdAt: Date

    /// A message to write to an outbox.
    public init(
        sequence: Int64 = 0, messageID: String, exchange: String, routingKey: String, eventType: String,
        contentType: String, partitionKey: String?, body: [UInt8], createdAt: Date = Date()
    ) {
        self.sequence = sequence
        self.messageID = messageID
        self.exchange = exchange
        self.routingKey = routingKey
        self.eventType = eventType
        self.contentType = contentType
        self.partitionKey = partitionKey
        self.body = body
        self.createdAt = createdAt
    }

    /// The message for `event`, encoded with `codec`, as ``EventPublisher`` would send it.
    public init<Event: AMQPEvent>(
        _ event: Event, exchange: String, messageID: String = UUID().uuidString, codec: any EventCodec = JSONEventCodec()
    ) throws {
        self.init(
            messageID: messageID, exchange: exchange, routingKey: Event.routingKey, eventType: Event.eventType,
            contentType: codec.contentType, partitionKey: event.partitionKey, body: try codec.encode(event))
    }

    /// The properties it is published with: persistent, with its type, message id, timestamp
    /// and partition key.
    var properties: BasicProperties {
        BasicProperties(
            contentType: contentType,
            headers: partitionKey.map { [EventHeader.partitionKey: .string($0)] },
            deliveryMode: .persistent, messageID: messageID,
            timestamp: AMQPTimestamp(createdAt), type: eventType)
    }
}

/// Where an ``OutboxRelay`` finds the events to publish. `RabbitMQEventsSQLite`'s
/// `SQLiteEventStore` is one; the application writes to it in its own transactions.
public protocol OutboxStore: Sendable {
    /// Up to `limit` messages waiting, in sequence order, if this relay may publish now: a store
    /// shared by several processes lets one relay at a time publish (a lease `owner` holds for
    /// `lease`, or a lock that lasts as long as the owner lives), so the order holds; others get
    /// nothing until it is released, runs out or its holder dies.
    func claimPending(owner: String, lease: Duration, limit: Int) async throws -> [OutboxMessage]
    /// Deletes published messages (after the broker confirmed them).
    func deletePublished(_ sequences: [Int64]) async throws
    /// Gives up the lease, so another relay may take over at once.
    func releaseLease(owner: String) async throws
    /// Yields when something may have been written to the outbox (in this process); the relay
    /// also looks every poll interval, for writes from other processes.
    func outboxChanges() -> AsyncStream<Void>
    /// How many events wait and since when: the relay reports it as metrics.
    func outboxBacklog() async throws -> OutboxBacklog
}

/// The events waiting in an outbox.
public struct OutboxBacklog: Sendable, Hashable {
    /// How many wait.
    public var count: Int
    /// When the oldest of them was written; `nil` when none waits.
    public var oldest: Date?

    /// A backlog of `count` events, the oldest written at `oldest`.
    public init(count: Int, oldest: Date?) {
        self.count = count
        self.oldest = oldest
    }

    /// How long the oldest event has waited at `now` (zero when none waits): how far the relay
    /// is behind.
    public func lag(at now: Date = Date()) -> Duration {
        guard let oldest else { return .zero }
        return .milliseconds(max(0, Int64(now.timeIntervalSince(oldest) * 1000)))
    }
}
