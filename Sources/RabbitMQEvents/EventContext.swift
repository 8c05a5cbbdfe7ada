import RabbitMQ

/// What a handler knows about the message that carried its event.
public struct EventContext: Sendable {
    /// The publisher's message id (unique per event from ``EventPublisher``): use it to
    /// de-duplicate, since delivery is at least once.
    public var messageID: String?
    /// The event's type name (the message's `type` property).
    public var eventType: String?
    /// The routing key it was published with.
    public var routingKey: String
    /// Whether the broker delivered this message before without an acknowledgement (a consumer
    /// that died or lost its connection before acking). Retries after a failed handling happen in
    /// place, on the same delivery: see ``attempt``.
    public var redelivered: Bool
    /// Which attempt this is: 1 the first time, 2 after one failed handling, and so on, counted
    /// by the dispatcher; deliveries never acknowledged before (a crash, a lost connection) count
    /// too, as quorum queues report them in `x-delivery-count`.
    public var attempt: Int
    /// The consumer group handling it (``EventDispatcher/Configuration/consumerGroup``): the
    /// name an ``EventInbox`` records handled events under.
    public var consumerGroup: String
    /// The partition key the event was published with (``EventHeader/partitionKey``), if any.
    public var partitionKey: String?
    /// The message's headers.
    public var headers: FieldTable
    /// The message's properties.
    public var properties: BasicProperties
}
