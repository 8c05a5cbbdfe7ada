internal import CRabbitMQ

extension AMQPChannel {
    /// Limits how many unacknowledged deliveries the broker sends (`basic.qos`).
    ///
    /// - Parameters:
    ///   - prefetchCount: Most unacknowledged deliveries outstanding; 0 means no limit.
    ///   - prefetchSize: Most bytes of unacknowledged bodies; 0 means no limit (RabbitMQ
    ///     supports only 0).
    ///   - global: `false` (the default): the limit applies to each consumer started on the
    ///     channel afterwards. `true`: one limit shared by all consumers on the channel.
    public func basicQos(prefetchCount: UInt16, prefetchSize: UInt32 = 0, global: Bool = false) async throws {
        let prefetch = ChannelRecord.Prefetch(count: prefetchCount, size: prefetchSize, global: global)
        _ = try await connection.core.call(
            on: key, AMQP_BASIC_QOS_METHOD, expecting: [AMQP_BASIC_QOS_OK_METHOD], recording: .prefetchSet(prefetch)
        ) { _ in prefetch.qosMethod }
    }

    /// Starts a consumer on a queue (`basic.consume`) and returns its deliveries as an
    /// ``AMQPConsumer`` sequence.
    ///
    /// ```swift
    /// try await channel.basicQos(prefetchCount: 50)
    /// for try await delivery in try await channel.consume(queue: "inventory") {
    ///     try await delivery.ack()
    /// }
    /// ```
    ///
    /// - Parameters:
    ///   - queue: The queue to consume from.
    ///   - consumerTag: A tag unique on the channel; empty lets the client pick one.
    ///   - autoAck: The broker considers each message acknowledged when it sends it (fast, but
    ///     a message in flight is lost if the consumer dies). Default: manual acknowledgement.
    ///   - exclusive: No other consumer may consume from the queue meanwhile.
    ///   - arguments: Consumer arguments, e.g. `x-priority`.
    public func consume(
        queue: String, consumerTag: String = "", autoAck: Bool = false, exclusive: Bool = false,
        arguments: FieldTable = [:]
    ) async throws -> AMQPConsumer {
        try AMQPValidation.shortString(queue, "the queue name")
        try AMQPValidation.shortString(consumerTag, "the consumer tag")
        let (tag, deliveries) = try await connection.core.consume(
            on: key, queue: queue, consumerTag: consumerTag, autoAck: autoAck, exclusive: exclusive,
            arguments: arguments)
        return AMQPConsumer(tag: tag, channel: self, autoAck: autoAck, deliveries: deliveries)
    }

    /// Cancels a consumer (`basic.cancel`). Its sequence ends once the broker confirms; messages
    /// still in flight to it go back to the queue. Does nothing for an unknown tag.
    public func cancel(consumerTag: String) async throws {
        await connection.core.cancelConsumer(on: key, tag: consumerTag)
    }

    /// Fetches one message from a queue (`basic.get`), or `nil` when the queue is empty.
    ///
    /// Polling costs a round trip per message; a consumer is the efficient way to receive many.
    ///
    /// - Parameters:
    ///   - queue: The queue.
    ///   - autoAck: The broker considers the message acknowledged as soon as it is sent.
    public func basicGet(queue: String, autoAck: Bool = false) async throws -> AMQPDelivery? {
        try AMQPValidation.shortString(queue, "the queue name")
        let reply = try await connection.core.call(
            on: key, AMQP_BASIC_GET_METHOD, expecting: [AMQP_BASIC_GET_OK_METHOD, AMQP_BASIC_GET_EMPTY_METHOD],
            autoAck: autoAck
        ) { arena in
            amqp_basic_get_t(ticket: 0, queue: arena.bytes(queue), no_ack: amqpBoolean(autoAck))
        }
        switch reply {
        case .getOk(let content): return AMQPDelivery(content, channel: self, autoAck: autoAck)
        case .getEmpty: return nil
        default: throw AMQPError.unexpectedReply(reply)
        }
    }

    /// Acknowledges (or nacks) every outstanding delivery on the channel up to and including
    /// `deliveryTag` in one frame (`multiple`); tag 0 covers every outstanding delivery.
    ///
    /// Tags keep growing across connection recoveries (see ``AMQPDelivery/deliveryTag``), so a
    /// tag kept from before a recovery can never acknowledge a delivery that came after it.
    ///
    /// - Throws: ``AMQPError/Code/alreadyAcknowledged`` when the tag is not outstanding;
    ///   ``AMQPError/Code/staleDelivery`` when it came before the connection was lost and
    ///   recovered (the broker redelivers those messages); ``AMQPError/Code/channelClosed`` when
    ///   the channel closed. Nothing is sent then.
    public func acknowledgeMultiple(upTo deliveryTag: UInt64, _ kind: AcknowledgementKind = .ack) async throws {
        if case .reject = kind {
            throw AMQPError(.invalidArgument, "basic.reject takes one message; use .nack to reject several")
        }
        let generation = key.status.generation
        try key.status.takeOutstanding(deliveryTag, multiple: true, generation: generation, channel: number)
        connection.core.executor.enqueue(
            .acknowledge(key: key, generation: generation, deliveryTag: deliveryTag, multiple: true, kind: kind))
    }

    /// Redelivers every unacknowledged message of the channel (`basic.recover`); with `requeue`
    /// (the only mode RabbitMQ supports) they go back to their queues. Deliveries received before
    /// can no longer be acknowledged.
    public func basicRecover(requeue: Bool = true) async throws {
        try await connection.core.recover(on: key, requeue: requeue)
    }

    /// Hands a delivery nobody will handle back to the broker (`basic.nack`, requeued): a
    /// delivery given back without a failure counts no attempt. Nothing happens for one that
    /// cannot be acknowledged any more (a closed channel, a recovery since).
    func giveBack(_ content: DeliveryContent) {
        try? settle(content.deliveryTag, generation: content.generation, .nack(requeue: true))
    }

    func acknowledge(_ delivery: AMQPDelivery, _ kind: AcknowledgementKind) throws {
        guard !delivery.isAutoAcknowledged else {
            throw AMQPError(.alreadyAcknowledged, "delivery \(delivery.deliveryTag) was auto-acknowledged by the broker")
        }
        try settle(delivery.deliveryTag, generation: delivery.generation, kind)
    }

    /// Settles one delivery: checked here against the channel's outstanding tags, then handed to
    /// the connection thread without waiting for it.
    private func settle(_ deliveryTag: UInt64, generation: Int, _ kind: AcknowledgementKind) throws {
        try key.status.takeOutstanding(deliveryTag, multiple: false, generation: generation, channel: number)
        connection.core.executor.enqueue(
            .acknowledge(key: key, generation: generation, deliveryTag: deliveryTag, multiple: false, kind: kind))
    }
}
