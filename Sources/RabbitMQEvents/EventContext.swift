import RabbitMQ

/// What a handler knows about the message that carried its event.
public struct EventContext: Sendable {
    /// The publisher's message id (unique per event from ``EventPublisher``): use it to
    /// de-duplicate, since delivery is at least once.
    public var messageID: String?
    /// The event's type name (the message's `type` property).
    public var eventType: String?
    /// The routing key it was published with (also for a retried copy, which travels to the
    /// queue directly).
    public var routingKey: String
    /// Whether the broker delivered this message before without an acknowledgement (a consumer
    /// that died or lost its connection before acking). A retry after a failed handling is a new
    /// copy, so it is not flagged: see ``attempt``.
    public var redelivered: Bool
    /// Which attempt this is: 1 the first time, 2 after one failed handling (or a redelivery),
    /// and so on, counted by the dispatcher (``EventDispatcher/RetryHeader/failedAttempts``) plus
    /// the quorum queue's `x-delivery-count`.
    public var attempt: Int
    /// The message's headers.
    public var headers: FieldTable
    /// The message's properties.
    public var properties: BasicProperties
}
