internal import CRabbitMQ

extension AMQPChannel {
    /// What the broker reports for a declared queue.
    public struct QueueDeclareResult: Sendable, Hashable {
        /// The queue's name: the one asked for, or the broker's for a server-named queue.
        public var name: String
        /// Messages ready for delivery (not counting unacknowledged ones).
        public var messageCount: UInt32
        /// Active consumers.
        public var consumerCount: UInt32
    }

    /// Declares a queue, creating it if it does not exist (`queue.declare`).
    ///
    /// ```swift
    /// let queue = try await channel.queueDeclare(
    ///     "inventory", durable: true, arguments: ["x-queue-type": "quorum"])
    /// ```
    ///
    /// - Parameters:
    ///   - name: The queue's name; empty asks the broker for a unique name (see the result).
    ///   - passive: Only check that the queue exists: a missing queue fails with
    ///     ``AMQPError/Code/notFound`` (404), and the broker closes the channel.
    ///   - durable: The queue survives a broker restart.
    ///   - exclusive: Only this connection may use the queue, and it is deleted when the
    ///     connection closes.
    ///   - autoDelete: The queue is deleted when its last consumer goes away.
    ///   - arguments: Optional arguments: `x-queue-type`, `x-dead-letter-exchange`,
    ///     `x-message-ttl`, `x-max-length`, `x-overflow`, ...
    /// - Throws: ``AMQPError``: ``AMQPError/Code/invalidArgument`` before sending for a name over
    ///   255 bytes or an invalid argument table; the broker's refusal (404 for a passive declare
    ///   of a missing queue, 406 for different arguments, 405 for another connection's exclusive
    ///   queue), after which the channel is closed.
    @discardableResult
    public func queueDeclare(
        _ name: String = "", passive: Bool = false, durable: Bool = false, exclusive: Bool = false,
        autoDelete: Bool = false, arguments: FieldTable = [:]
    ) async throws -> QueueDeclareResult {
        try AMQPValidation.shortString(name, "the queue name")
        let queue = RecordedQueue(
            name: name, isServerNamed: name.isEmpty, durable: durable, exclusive: exclusive, autoDelete: autoDelete,
            arguments: arguments)
        let reply = try await connection.core.call(
            on: key, AMQP_QUEUE_DECLARE_METHOD, expecting: [AMQP_QUEUE_DECLARE_OK_METHOD],
            recording: passive ? nil : .queueDeclared(queue)
        ) { arena in try queue.declareMethod(arena, passive: passive) }
        guard case .queueDeclareOk(let result) = reply else { throw AMQPError.unexpectedReply(reply) }
        return result
    }

    /// Binds a queue to an exchange (`queue.bind`): the exchange routes messages to it by
    /// `routingKey` (for a topic exchange a pattern: `order.*`, `#`).
    ///
    /// ```swift
    /// try await channel.queueBind("inventory", exchange: "orders", routingKey: "order.*")
    /// ```
    public func queueBind(
        _ queue: String, exchange: String, routingKey: String = "", arguments: FieldTable = [:]
    ) async throws {
        try validateBinding(queue, exchange, routingKey)
        let binding = RecordedBinding(destination: queue, source: exchange, routingKey: routingKey, arguments: arguments)
        _ = try await connection.core.call(
            on: key, AMQP_QUEUE_BIND_METHOD, expecting: [AMQP_QUEUE_BIND_OK_METHOD], recording: .queueBound(binding)
        ) { arena in try binding.queueBindMethod(arena) }
    }

    /// Removes a binding (`queue.unbind`); key and arguments must match the binding's.
    public func queueUnbind(
        _ queue: String, exchange: String, routingKey: String = "", arguments: FieldTable = [:]
    ) async throws {
        try validateBinding(queue, exchange, routingKey)
        let binding = RecordedBinding(destination: queue, source: exchange, routingKey: routingKey, arguments: arguments)
        _ = try await connection.core.call(
            on: key, AMQP_QUEUE_UNBIND_METHOD, expecting: [AMQP_QUEUE_UNBIND_OK_METHOD],
            recording: .queueUnbound(binding)
        ) { arena in try binding.queueUnbindMethod(arena) }
    }

    /// Removes every ready message from a queue (`queue.purge`) and returns how many there were.
    /// Unacknowledged deliveries are not touched.
    @discardableResult
    public func queuePurge(_ name: String) async throws -> UInt32 {
        try AMQPValidation.shortString(name, "the queue name")
        let reply = try await connection.core.call(
            on: key, AMQP_QUEUE_PURGE_METHOD, expecting: [AMQP_QUEUE_PURGE_OK_METHOD]
        ) { arena in
            amqp_queue_purge_t(ticket: 0, queue: arena.bytes(name), nowait: 0)
        }
        guard case .purgeOk(let messageCount) = reply else { throw AMQPError.unexpectedReply(reply) }
        return messageCount
    }

    /// Deletes a queue (`queue.delete`) and returns how many messages it held.
    ///
    /// - Parameters:
    ///   - name: The queue.
    ///   - ifUnused: Only delete the queue if it has no consumers (otherwise the broker fails
    ///     the call with 406 and closes the channel).
    ///   - ifEmpty: Only delete the queue if it holds no messages (likewise).
    @discardableResult
    public func queueDelete(_ name: String, ifUnused: Bool = false, ifEmpty: Bool = false) async throws -> UInt32 {
        try AMQPValidation.shortString(name, "the queue name")
        let reply = try await connection.core.call(
            on: key, AMQP_QUEUE_DELETE_METHOD, expecting: [AMQP_QUEUE_DELETE_OK_METHOD], recording: .queueDeleted(name)
        ) { arena in
            amqp_queue_delete_t(
                ticket: 0, queue: arena.bytes(name), if_unused: amqpBoolean(ifUnused), if_empty: amqpBoolean(ifEmpty),
                nowait: 0)
        }
        guard case .queueDeleteOk(let messageCount) = reply else { throw AMQPError.unexpectedReply(reply) }
        return messageCount
    }
}

func amqpBoolean(_ value: Bool) -> amqp_boolean_t { value ? 1 : 0 }

extension AMQPError {
    static func unexpectedReply(_ reply: MethodReply) -> AMQPError {
        AMQPError(.protocolError, "unexpected reply \(reply)")
    }
}
