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
    /// Whether the broker delivered it before (a retry, or a consumer that died before acking).
    public var redelivered: Bool
    /// Which attempt this is: 1 the first time, 2 after one failed handling, and so on.
    public var attempt: Int
    /// The message's headers.
    public var headers: FieldTable
    /// The message's properties.
    public var properties: BasicProperties
}
