/// A message the broker delivered: to a consumer (``AMQPConsumer``) or in answer to
/// ``AMQPChannel/basicGet(queue:autoAck:)``.
///
/// Unless it was consumed with `autoAck`, acknowledge it once, with ``ack()``, ``nack(requeue:)``
/// or ``reject(requeue:)``, on the channel it came on. Until then the broker counts it against
/// the consumer's prefetch, and redelivers it if the channel closes.
public struct AMQPDelivery: Sendable {
    /// The message as the engine received it, held whole: a delivery is moved from the socket to
    /// the application in one piece, not copied field by field.
    private var content: DeliveryContent

    /// The body, exactly as published.
    public var body: [UInt8] {
        get { content.body }
        _modify { yield &content.body }
    }
    /// The properties it was published with.
    public var properties: BasicProperties {
        get { content.properties }
        _modify { yield &content.properties }
    }
    /// The channel-scoped tag that identifies it for acknowledgement.
    ///
    /// The broker's tag on the first connection; after a recovery the client adds the highest
    /// tag seen before, so a channel's tags keep growing and an old tag never names a new
    /// delivery.
    public var deliveryTag: UInt64 {
        get { content.deliveryTag }
        _modify { yield &content.deliveryTag }
    }
    /// Whether the broker delivered it before without an acknowledgement (a requeue, a
    /// recovered channel, a consumer that went away).
    public var redelivered: Bool {
        get { content.redelivered }
        _modify { yield &content.redelivered }
    }
    /// The exchange it was published to (empty for the default exchange).
    public var exchange: String {
        get { content.exchange }
        _modify { yield &content.exchange }
    }
    /// The routing key it was published with.
    public var routingKey: String {
        get { content.routingKey }
        _modify { yield &content.routingKey }
    }
    /// The consumer it was delivered to; `nil` for `basic.get`.
    public var consumerTag: String? {
        get { content.consumerTag }
        _modify { yield &content.consumerTag }
    }
    /// For `basic.get`: how many messages were left in the queue after this one.
    public var messageCount: UInt32? {
        get { content.messageCount }
        _modify { yield &content.messageCount }
    }
    /// The channel it arrived on; acknowledgements go back on it.
    public let channel: AMQPChannel
    /// Whether the broker considered it acknowledged on sending (`autoAck`).
    public let isAutoAcknowledged: Bool
    /// Which incarnation of the connection (counting recoveries) it arrived on: only deliveries
    /// of the current one can be acknowledged.
    var generation: Int { content.generation }

    init(_ content: consuming DeliveryContent, channel: AMQPChannel, autoAck: Bool) {
        self.content = content
        self.channel = channel
        self.isAutoAcknowledged = autoAck
    }

    /// The body as UTF-8 text.
    public var bodyString: String { String(decoding: body, as: UTF8.self) }

    /// Acknowledges the message: the broker forgets it.
    ///
    /// - Throws: ``AMQPError/Code/alreadyAcknowledged`` when it was acknowledged, rejected or
    ///   auto-acknowledged already; ``AMQPError/Code/channelClosed`` when its channel closed (the
    ///   broker then redelivers it). Neither closes the channel: nothing is sent.
    nonisolated(nonsending) public func ack() async throws {
        try channel.acknowledge(self, .ack)
    }

    /// Rejects the message (`basic.nack`): back into the queue with `requeue`, otherwise
    /// dead-lettered (if the queue has a dead-letter exchange) or dropped.
    nonisolated(nonsending) public func nack(requeue: Bool = true) async throws {
        try channel.acknowledge(self, .nack(requeue: requeue))
    }

    /// Rejects the message (`basic.reject`); the same as ``nack(requeue:)`` for one message.
    nonisolated(nonsending) public func reject(requeue: Bool = false) async throws {
        try channel.acknowledge(self, .reject(requeue: requeue))
    }
}

/// What to tell the broker about a delivered message.
public enum AcknowledgementKind: Sendable, Hashable {
    /// `basic.ack`.
    case ack
    /// `basic.nack`.
    case nack(requeue: Bool)
    /// `basic.reject`.
    case reject(requeue: Bool)
}
