internal import CRabbitMQ

/// The kind of an exchange, which decides how it routes.
public struct ExchangeType: RawRepresentable, Sendable, Hashable, ExpressibleByStringLiteral {
    /// The type's name as the broker knows it.
    public var rawValue: String

    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }

    /// Routes to queues whose binding key equals the routing key.
    public static let direct = ExchangeType(rawValue: "direct")
    /// Routes to every bound queue.
    public static let fanout = ExchangeType(rawValue: "fanout")
    /// Routes by pattern: `*` matches one dot-separated word, `#` zero or more (`order.*`).
    public static let topic = ExchangeType(rawValue: "topic")
    /// Routes by message headers matching the binding's arguments.
    public static let headers = ExchangeType(rawValue: "headers")
}

extension AMQPChannel {
    /// Declares an exchange, creating it if it does not exist (`exchange.declare`).
    ///
    /// ```swift
    /// try await channel.exchangeDeclare("orders", type: .topic, durable: true)
    /// ```
    ///
    /// - Parameters:
    ///   - name: The exchange's name.
    ///   - type: How it routes; plugin types (e.g. `"x-consistent-hash"`) work as strings.
    ///   - passive: Only check that it exists: a missing exchange fails with
    ///     ``AMQPError/Code/notFound`` and the broker closes the channel.
    ///   - durable: It survives a broker restart.
    ///   - autoDelete: It is deleted when its last binding goes.
    ///   - internal: Clients cannot publish to it; only exchange-to-exchange bindings feed it.
    ///   - arguments: Optional arguments, e.g. `alternate-exchange`.
    /// - Throws: the broker's refusal: 406 when it exists with other settings, 503 (closing the
    ///   connection) for an unknown type.
    public func exchangeDeclare(
        _ name: String, type: ExchangeType = .direct, passive: Bool = false, durable: Bool = false,
        autoDelete: Bool = false, internal: Bool = false, arguments: FieldTable = [:]
    ) async throws {
        try AMQPValidation.shortString(name, "the exchange name")
        try AMQPValidation.shortString(type.rawValue, "the exchange type")
        let exchange = RecordedExchange(
            name: name, type: type.rawValue, durable: durable, autoDelete: autoDelete, internal: `internal`,
            arguments: arguments)
        _ = try await connection.core.call(
            on: key, AMQP_EXCHANGE_DECLARE_METHOD, expecting: [AMQP_EXCHANGE_DECLARE_OK_METHOD],
            recording: passive ? nil : .exchangeDeclared(exchange)
        ) { arena in try exchange.declareMethod(arena, passive: passive) }
    }

    /// Deletes an exchange (`exchange.delete`).
    ///
    /// - Parameters:
    ///   - name: The exchange.
    ///   - ifUnused: Only delete it if it has no bindings (otherwise 406).
    public func exchangeDelete(_ name: String, ifUnused: Bool = false) async throws {
        try AMQPValidation.shortString(name, "the exchange name")
        _ = try await connection.core.call(
            on: key, AMQP_EXCHANGE_DELETE_METHOD, expecting: [AMQP_EXCHANGE_DELETE_OK_METHOD],
            recording: .exchangeDeleted(name)
        ) { arena in
            amqp_exchange_delete_t(ticket: 0, exchange: arena.bytes(name), if_unused: amqpBoolean(ifUnused), nowait: 0)
        }
    }

    /// Binds exchange `destination` to exchange `source` (`exchange.bind`, a RabbitMQ
    /// extension): messages `source` routes with `routingKey` also go through `destination`.
    public func exchangeBind(
        destination: String, source: String, routingKey: String = "", arguments: FieldTable = [:]
    ) async throws {
        try validateBinding(destination, source, routingKey)
        let binding = RecordedBinding(
            destination: destination, source: source, routingKey: routingKey, arguments: arguments)
        _ = try await connection.core.call(
            on: key, AMQP_EXCHANGE_BIND_METHOD, expecting: [AMQP_EXCHANGE_BIND_OK_METHOD],
            recording: .exchangeBound(binding)
        ) { arena in try binding.exchangeBindMethod(arena) }
    }

    /// Removes an exchange-to-exchange binding (`exchange.unbind`).
    public func exchangeUnbind(
        destination: String, source: String, routingKey: String = "", arguments: FieldTable = [:]
    ) async throws {
        try validateBinding(destination, source, routingKey)
        let binding = RecordedBinding(
            destination: destination, source: source, routingKey: routingKey, arguments: arguments)
        _ = try await connection.core.call(
            on: key, AMQP_EXCHANGE_UNBIND_METHOD, expecting: [AMQP_EXCHANGE_UNBIND_OK_METHOD],
            recording: .exchangeUnbound(binding)
        ) { arena in try binding.exchangeUnbindMethod(arena) }
    }

    func validateBinding(_ destination: String, _ source: String, _ routingKey: String) throws {
        try AMQPValidation.shortString(destination, "the destination name")
        try AMQPValidation.shortString(source, "the source exchange name")
        try AMQPValidation.shortString(routingKey, "the routing key")
    }
}
