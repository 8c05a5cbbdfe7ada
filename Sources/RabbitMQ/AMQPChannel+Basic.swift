internal import CRabbitMQ

extension AMQPChannel {
    /// Publishes a message (`basic.publish`).
    ///
    /// ```swift
    /// try await channel.publish(Array(json.utf8), exchange: "orders", routingKey: "order.created",
    ///                           properties: .init(contentType: "application/json", deliveryMode: .persistent))
    /// ```
    ///
    /// Returns once the message is written to the connection's socket. That is not a guarantee
    /// the broker has it: publisher confirms give that guarantee.
    ///
    /// - Parameters:
    ///   - body: The message body, any size (bodies larger than a frame are split).
    ///   - exchange: The exchange; `""` is the default exchange, which routes to the queue named
    ///     by the routing key.
    ///   - routingKey: The routing key.
    ///   - properties: Content type, headers, delivery mode and the other message properties.
    /// - Throws: ``AMQPError/Code/invalidArgument`` before anything is sent for names or
    ///   properties over 255 bytes and headers that do not fit in a frame; the channel's or the
    ///   connection's close reason when they are closed. A publish to a missing exchange makes
    ///   the broker close the channel (404) after the fact: later calls report it.
    public func publish(
        _ body: [UInt8], exchange: String = "", routingKey: String, properties: BasicProperties = BasicProperties()
    ) async throws {
        try AMQPValidation.shortString(exchange, "the exchange name")
        try AMQPValidation.shortString(routingKey, "the routing key")
        try await connection.core.publish(
            on: key, exchange: exchange, routingKey: routingKey, properties: properties, body: body)
    }

    /// Publishes a message whose body is `text` in UTF-8. See ``publish(_:exchange:routingKey:properties:)``.
    public func publish(
        _ text: String, exchange: String = "", routingKey: String, properties: BasicProperties = BasicProperties()
    ) async throws {
        try await publish(Array(text.utf8), exchange: exchange, routingKey: routingKey, properties: properties)
    }

    /// Fetches one message from a queue (`basic.get`), or `nil` when the queue is empty.
    ///
    /// Polling with `basicGet` costs a round trip per message; consumers are the efficient way to
    /// receive a stream of messages.
    ///
    /// - Parameters:
    ///   - queue: The queue.
    ///   - autoAck: The broker considers the message acknowledged as soon as it is sent.
    public func basicGet(queue: String, autoAck: Bool = false) async throws -> AMQPMessage? {
        try AMQPValidation.shortString(queue, "the queue name")
        let reply = try await connection.core.call(
            on: key, AMQP_BASIC_GET_METHOD, expecting: [AMQP_BASIC_GET_OK_METHOD, AMQP_BASIC_GET_EMPTY_METHOD]
        ) { arena in
            amqp_basic_get_t(ticket: 0, queue: arena.bytes(queue), no_ack: amqpBoolean(autoAck))
        }
        switch reply {
        case .getOk(let message): return message
        case .getEmpty: return nil
        default: throw AMQPError.unexpectedReply(reply)
        }
    }
}
