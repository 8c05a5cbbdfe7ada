/// Where a consumer group records the events it handled, so that a redelivered event (after a
/// crash, a lost connection, a partition moving to another replica) is acknowledged without its
/// effect being applied twice: effectively once, on top of at-least-once delivery.
///
/// A store runs the handler's own writes and the inbox record in one transaction of its database:
/// either both commit or neither does, so no crash can leave the effect without the record (a
/// duplicate later) or the record without the effect (a lost event). Use it inside a handler:
///
/// ```swift
/// handlers.on(OrderCreated.self) { order, context in
///     let outcome = try await store.once(context) { db in
///         try Stock.reserve(order.items, for: order.orderID, in: db)
///     }
///     if outcome == .duplicate { logger.debug("already reserved") }
/// }
/// ```
///
/// `RabbitMQEventsSQLite` has a store on SQLite (several processes on one machine may share its
/// file); ``InMemoryEventInbox`` keeps the ids in memory, for handlers without a database.
/// `RabbitMQEventsPostgres`'s `PostgresEventStore` offers the same `once` on PostgreSQL, with
/// asynchronous work (its client is asynchronous, so it stands outside this protocol, whose work
/// is synchronous like GRDB's transactions).
public protocol EventInbox: Sendable {
    /// What a handler's writes are made through (a database connection in a transaction).
    associatedtype Transaction

    /// Runs `work` and records `messageID` for `consumerGroup` in one transaction, unless it is
    /// recorded already: then `work` does not run and the outcome is ``InboxOutcome/duplicate``.
    /// When `work` throws, nothing is recorded and nothing it wrote stays.
    func once<Result: Sendable>(
        messageID: String, consumerGroup: String, _ work: @Sendable (Transaction) throws -> Result
    ) async throws -> InboxOutcome<Result>
}

/// Whether an event's effect was applied now or had been before.
public enum InboxOutcome<Result: Sendable>: Sendable {
    /// The work ran and committed with the record; its result.
    case handled(Result)
    /// The event was recorded before: the work did not run.
    case duplicate

    /// Whether the work ran now.
    public var wasHandled: Bool {
        if case .handled = self { return true }
        return false
    }
}

extension InboxOutcome: Equatable where Result: Equatable {}

extension EventInbox {
    /// ``once(messageID:consumerGroup:_:)`` for the event a handler got: its message id and the
    /// dispatcher's consumer group (``EventContext/consumerGroup``).
    ///
    /// - Throws: ``MissingMessageID`` when the message carries no message id (the inbox cannot
    ///   tell it from another), or what the store or `work` throws.
    public func once<Result: Sendable>(
        _ context: EventContext, _ work: @Sendable (Transaction) throws -> Result
    ) async throws -> InboxOutcome<Result> {
        guard let messageID = context.messageID, !messageID.isEmpty else { throw MissingMessageID() }
        return try await once(messageID: messageID, consumerGroup: context.consumerGroup, work)
    }
}

/// An event without a message id cannot go through an inbox: nothing tells its redelivery from
/// another event. (``EventPublisher`` gives every event one.)
public struct MissingMessageID: Error, CustomStringConvertible {
    public init() {}
    public var description: String { "the message has no message-id, so the inbox cannot de-duplicate it" }
}
