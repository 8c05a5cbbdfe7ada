/// A message fetched with ``AMQPChannel/basicGet(queue:autoAck:)``.
public struct AMQPMessage: Sendable, Hashable {
    /// The body, exactly as published.
    public var body: [UInt8]
    /// The properties it was published with.
    public var properties: BasicProperties
    /// The channel-scoped tag that acknowledges it.
    public var deliveryTag: UInt64
    /// Whether the broker delivered it before (and it was not acknowledged then).
    public var redelivered: Bool
    /// The exchange it was published to (empty for the default exchange).
    public var exchange: String
    /// The routing key it was published with.
    public var routingKey: String
    /// How many messages were left in the queue after this one.
    public var messageCount: UInt32

    /// The body as UTF-8 text.
    public var bodyString: String { String(decoding: body, as: UTF8.self) }
}
