internal import CRabbitMQ

extension AMQPChannel {
    /// Publishes a message (`basic.publish`).
    ///
    /// The message is handed to the connection's thread without a round trip to it; messages
    /// published on one channel go out in call order.
    ///
    /// ```swift
    /// try await channel.confirmSelect()
    /// try await channel.publish(Array(json.utf8), exchange: "orders", routingKey: "order.created",
    ///                           properties: .init(contentType: "application/json", deliveryMode: .persistent))
    /// ```
    ///
    /// In confirm mode (``confirmSelect(window:)``) it returns once the broker has confirmed the
    /// message, and throws if the broker refuses it or, for a `mandatory` message, cannot route
    /// it. Otherwise it returns once the message is queued for the connection's thread (at most
    /// 1,000 per channel wait there; beyond that a publish waits for room), which guarantees
    /// nothing about the broker: a message still queued when the connection fails is lost.
    ///
    /// While the broker blocks the connection (a memory or disk alarm) the publish waits, at most
    /// ``AMQPConnection/Configuration/blockedPublishTimeout``.
    ///
    /// - Parameters:
    ///   - body: The message body, any size (bodies larger than a frame are split).
    ///   - exchange: The exchange; `""` is the default exchange, which routes to the queue named
    ///     by the routing key.
    ///   - routingKey: The routing key.
    ///   - mandatory: Have the broker return the message if no queue takes it. In confirm mode
    ///     the publish then fails with ``AMQPError/Code/publishReturned`` (312 NO_ROUTE);
    ///     otherwise the message appears in ``returnedMessages``.
    ///   - properties: Content type, headers, delivery mode and the other message properties.
    /// - Throws: ``AMQPError/Code/invalidArgument`` before anything is sent for names or
    ///   properties over 255 bytes and headers that do not fit in a frame;
    ///   ``AMQPError/Code/publishNacked``, ``AMQPError/Code/publishReturned``,
    ///   ``AMQPError/Code/blockedTimeout``; the channel's or connection's close reason. A
    ///   publish to a missing exchange makes the broker close the channel (404).
    nonisolated(nonsending) public func publish(
        _ body: [UInt8], exchange: String = "", routingKey: String, mandatory: Bool = false,
        properties: BasicProperties = BasicProperties()
    ) async throws {
        let confirmation = try await handOver(
            body, exchange: exchange, routingKey: routingKey, mandatory: mandatory, properties: properties,
            requireConfirmMode: false)
        try await confirmation?.wait()
    }

    /// Publishes a message whose body is `text` in UTF-8. See
    /// `publish(_:exchange:routingKey:mandatory:properties:)`.
    public func publish(
        _ text: String, exchange: String = "", routingKey: String, mandatory: Bool = false,
        properties: BasicProperties = BasicProperties()
    ) async throws {
        try await publish(
            Array(text.utf8), exchange: exchange, routingKey: routingKey, mandatory: mandatory, properties: properties)
    }

    /// Publishes a message in confirm mode without waiting for the broker's confirm, and returns
    /// the confirmation to wait on later.
    ///
    /// It waits only while the channel's window of unconfirmed messages is full (see
    /// ``confirmSelect(window:)``), so a loop of these keeps up to `window` messages in flight:
    /// the fast way to publish many messages safely.
    ///
    /// - Throws: ``AMQPError/Code/invalidArgument`` when the channel is not in confirm mode, and
    ///   what `publish(_:exchange:routingKey:mandatory:properties:)` throws
    ///   before the broker's verdict.
    nonisolated(nonsending) public func publishWithoutWaiting(
        _ body: [UInt8], exchange: String = "", routingKey: String, mandatory: Bool = false,
        properties: BasicProperties = BasicProperties()
    ) async throws -> PublishConfirmation {
        let confirmation = try await handOver(
            body, exchange: exchange, routingKey: routingKey, mandatory: mandatory, properties: properties,
            requireConfirmMode: true)
        guard let confirmation else { throw AMQPError(.invalidArgument, "the channel is not in confirm mode") }
        return confirmation
    }

    /// Checks a publish, reserves room for it and hands it to the connection thread without
    /// waiting for that thread: a publish suspends only while the window is full or the broker
    /// blocks the connection. Returns its confirmation in confirm mode.
    nonisolated(nonsending) private func handOver(
        _ body: [UInt8], exchange: String, routingKey: String, mandatory: Bool, properties: BasicProperties,
        requireConfirmMode: Bool
    ) async throws -> PublishConfirmation? {
        try AMQPValidation.shortString(exchange, "the exchange name")
        try AMQPValidation.shortString(routingKey, "the routing key")
        try properties.validate(frameMax: key.frameMax)
        let maximum = connection.core.configuration.maximumMessageSize
        guard body.count <= maximum else {
            throw AMQPError(
                .invalidArgument,
                "the message body has \(body.count) bytes, more than the configured maximum of \(maximum) (maximumMessageSize)")
        }
        if connection.blockedReason != nil { try await connection.core.waitUntilUnblocked() }
        let confirmMode: Bool
        if let reserved = try key.status.reservePublishIfRoom(requireConfirmMode: requireConfirmMode) {
            confirmMode = reserved
        } else {
            confirmMode = try await key.status.reservePublish(requireConfirmMode: requireConfirmMode)
        }
        let confirmation = confirmMode ? PublishConfirmation() : nil
        connection.core.executor.enqueue(
            .publish(
                PublishCommand(
                    key: key, exchange: exchange, routingKey: routingKey, mandatory: mandatory, properties: properties,
                    body: body, confirmation: confirmation)))
        return confirmation
    }

    /// Turns on publisher confirms (`confirm.select`): from now on the broker confirms (or
    /// refuses) every message published on the channel, and `publish(_:exchange:routingKey:mandatory:properties:)`
    /// waits for it.
    ///
    /// It returns once the broker has answered. Confirm mode covers the publishes written after
    /// the method, never earlier ones: publishes from other tasks while it waits behind a slower
    /// method on the channel go out without a confirmation.
    ///
    /// - Parameter window: Most messages in flight without a confirm; a publish beyond it waits
    ///   for room. Calling again on a channel in confirm mode only changes the window.
    public func confirmSelect(window: Int = 1000) async throws {
        try await connection.core.confirmSelect(on: key, window: window)
    }

    /// `mandatory` messages the broker returned that no confirm-mode publish reported: outside
    /// confirm mode, every returned message. Buffers the newest 1024; iterate it from one task.
    public var returnedMessages: AsyncStream<ReturnedMessage> { key.status.returns }

    // MARK: Transactions

    /// Puts the channel in transaction mode (`tx.select`): publishes and acknowledgements take
    /// effect only at ``txCommit()``. A channel cannot be in confirm and transaction mode both.
    public func txSelect() async throws {
        try await connection.core.selectTransactions(on: key)
    }

    /// Commits the publishes and acknowledgements since the last commit or rollback (`tx.commit`).
    ///
    /// - Throws: ``AMQPError/Code/transactionLost`` when the connection was lost and recovered
    ///   since the transaction began: its first part died with the old connection, so the rest
    ///   is rolled back rather than committed alone, and nothing of it takes effect. Publish it
    ///   again in a new transaction.
    public func txCommit() async throws {
        try await connection.core.commitTransaction(on: key)
    }

    /// Discards the publishes and acknowledgements since the last commit or rollback (`tx.rollback`).
    public func txRollback() async throws {
        try await connection.core.rollBackTransaction(on: key)
    }
}
