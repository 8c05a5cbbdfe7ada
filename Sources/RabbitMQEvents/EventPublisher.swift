import Foundation
import RabbitMQ
import Tracing

/// Publishes typed events to an exchange, safely: every event is persistent, `mandatory`, and
/// confirmed by the broker (the first two can be relaxed for events that may be lost).
///
/// ```swift
/// let publisher = try await EventPublisher(connection: connection, exchange: "orders")
/// try await publisher.publish(OrderCreated(orderID: "ord-1", items: items))
/// ```
///
/// Each message gets `content-type` from the codec, `type` = the event's type name, a unique
/// `message-id` (a UUID unless you pass one), the current `timestamp`, persistent delivery
/// (unless configured otherwise), the event's routing key and, when the event has one, its
/// partition key in the ``EventHeader/partitionKey`` header. ``publish(_:messageID:headers:)``
/// returns once the broker confirmed; an event the broker refuses (nack) or cannot route to any
/// queue (return) is an error.
///
/// Tracing: each publish is a `producer` span of the tracer the application bootstrapped
/// (swift-distributed-tracing), whose context is written into the message headers (with an
/// OpenTelemetry tracer, W3C `traceparent`); ``EventDispatcher`` continues the trace.
public struct EventPublisher: Sendable {
    /// The channel the publisher uses (in confirm mode).
    public let channel: AMQPChannel
    /// The exchange events go to.
    public let exchange: String
    /// How events become bodies.
    public let codec: any EventCodec
    /// Written to each message's `app-id`, if set.
    public let appID: String?
    /// Persistent (the default: durable queues keep the event across a broker restart) or
    /// transient.
    public let deliveryMode: BasicProperties.DeliveryMode
    /// Whether an event no queue is bound for fails with `publishReturned` (the default) rather
    /// than being dropped by the broker.
    public let mandatory: Bool

    /// Opens a channel on `connection` in confirm mode and, unless `declareExchange` is false,
    /// declares `exchange` as a durable topic exchange.
    ///
    /// - Parameters:
    ///   - connection: The connection to publish on (the publisher opens a channel of its own).
    ///   - exchange: The topic exchange events go to.
    ///   - declareExchange: Declare the exchange (durable topic) first.
    ///   - window: Most events in flight without a confirm (for
    ///     ``publishWithoutWaiting(_:messageID:headers:)``).
    ///   - codec: How events become bodies; JSON by default.
    ///   - appID: Written to each message's `app-id`, if set.
    ///   - deliveryMode: Persistent by default; `.transient` for events that may be lost when
    ///     the broker restarts (cheaper for the broker).
    ///   - mandatory: Fail the publish of an event no queue is bound for (default); `false` lets
    ///     the broker drop it silently.
    public init(
        connection: AMQPConnection, exchange: String, declareExchange: Bool = true, window: Int = 1000,
        codec: any EventCodec = JSONEventCodec(), appID: String? = nil,
        deliveryMode: BasicProperties.DeliveryMode = .persistent, mandatory: Bool = true
    ) async throws {
        let channel = try await connection.openChannel()
        if declareExchange { try await channel.exchangeDeclare(exchange, type: .topic, durable: true) }
        try await channel.confirmSelect(window: window)
        self.channel = channel
        self.exchange = exchange
        self.codec = codec
        self.appID = appID
        self.deliveryMode = deliveryMode
        self.mandatory = mandatory
    }

    /// Publishes an event and waits for the broker's confirm.
    ///
    /// - Parameters:
    ///   - event: The event; its type decides the routing key and the `type` property.
    ///   - messageID: The message id; a new UUID by default. Pass a stable one (e.g. derived
    ///     from the order) to let consumers de-duplicate a republished event.
    ///   - headers: Extra headers.
    /// - Throws: `AMQPError` with code `publishNacked` or
    ///   `publishReturned` (no queue is bound for the routing key), an encoding
    ///   error, or the connection's or channel's close reason.
    nonisolated(nonsending) public func publish<Event: AMQPEvent>(
        _ event: Event, messageID: String = UUID().uuidString, headers: FieldTable = [:]
    ) async throws {
        try await publishWithoutWaiting(event, messageID: messageID, headers: headers).wait()
    }

    /// Publishes an event without waiting for its confirm: returns once there is room in the
    /// window. Wait on the returned confirmation (or the last one) before relying on it.
    nonisolated(nonsending) public func publishWithoutWaiting<Event: AMQPEvent>(
        _ event: Event, messageID: String = UUID().uuidString, headers: FieldTable = [:]
    ) async throws -> PublishConfirmation {
        let body = try codec.encode(event)
        // Nothing bootstrapped (the default): no span to start, no context to inject.
        if InstrumentationSystem.instrument is NoOpInstrument {
            return try await send(body, of: Event.self, messageID: messageID, headers: headers, key: event.partitionKey)
        }
        return try await withSpan("\(Event.routingKey) publish", ofKind: .producer) { span in
            span.attributes["messaging.system"] = "rabbitmq"
            span.attributes["messaging.destination.name"] = exchange
            span.attributes["messaging.message.id"] = messageID
            var headers = headers
            InstrumentationSystem.instrument.inject(span.context, into: &headers, using: TraceContextInjector())
            return try await send(body, of: Event.self, messageID: messageID, headers: headers, key: event.partitionKey)
        }
    }

    /// Publishes an encoded event with its properties.
    nonisolated(nonsending) private func send<Event: AMQPEvent>(
        _ body: [UInt8], of type: Event.Type, messageID: String, headers: FieldTable, key: String?
    ) async throws -> PublishConfirmation {
        var headers = headers
        if let key { headers[EventHeader.partitionKey] = .string(key) }
        let properties = BasicProperties(
            contentType: codec.contentType, headers: headers.isEmpty ? nil : headers, deliveryMode: deliveryMode,
            messageID: messageID, timestamp: .now, type: Event.eventType, appID: appID)
        return try await channel.publishWithoutWaiting(
            body, exchange: exchange, routingKey: Event.routingKey, mandatory: mandatory, properties: properties)
    }
}
