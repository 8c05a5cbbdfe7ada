import Logging
import Metrics
import Tracing
import RabbitMQ
import ServiceLifecycle

/// Consumes one queue and runs the handler registered for each event's type, with the policy an
/// at-least-once consumer needs written once:
///
/// - **Success**: the handler returns, the delivery is acknowledged.
/// - **Failure**: the handler throws; the event is retried until ``Configuration/maxAttempts``,
///   then dead-lettered with the attempt count and the error. A retry is a copy of the message
///   published to the back of the queue (confirmed) with the failed attempts counted in the
///   ``RetryHeader/failedAttempts`` header, then the original is acknowledged: the count is
///   right on every queue type (classic queues count no deliveries) and every broker version.
/// - **Poison**: a body that does not decode, or an event type with no handler, is dead-lettered
///   at once with the reason. Nothing is requeued in a loop; nothing is dropped.
///
/// ```swift
/// var handlers = EventHandlers()
/// handlers.on(OrderCreated.self) { order, context in try await inventory.reserve(order) }
/// let dispatcher = EventDispatcher(
///     connection: try .init(url: url),
///     configuration: .init(queue: "inventory", exchange: "orders", bindings: ["order.*"]),
///     handlers: handlers, logger: logger)
/// try await ServiceGroup(services: [dispatcher], gracefulShutdownSignals: [.sigterm], logger: logger).run()
/// ```
///
/// ``run()`` opens its own connection and declares the topology: the exchange (durable topic),
/// the queue (durable quorum queue, which also counts redeliveries after a crash in
/// `x-delivery-count`: they count as attempts too), its bindings,
/// and a dead-letter exchange and queue (`<queue>.dead-letter`). Handlers run concurrently, at
/// most ``Configuration/prefetch`` at a time.
///
/// The connection recovers on its own when it is lost (a broker restart, a cluster node going
/// away; see `AMQPConnection.Configuration.Recovery`), and the consumer resumes. A handler that
/// was running when the connection went cannot acknowledge its delivery any more: the broker
/// redelivers the message and the handler runs again, so handlers should be idempotent (the
/// message id in ``EventContext`` identifies a redelivered event). ``run()`` throws only when the
/// connection closes for good.
///
/// Observability: with a tracer bootstrapped (swift-distributed-tracing), each handling is a
/// `consumer` span that continues the trace the publisher wrote into the message headers (see
/// ``EventPublisher``); with none, no span is made. Its duration is recorded in the
/// `rabbitmq_events_handler_duration` timer.
///
/// As a swift-service-lifecycle `Service`: on graceful shutdown it cancels its consumer, lets the
/// handlers in flight finish and acknowledge within ``Configuration/shutdownDeadline``, then
/// closes. On task cancellation it stops at once. Either way, whatever was not acknowledged goes
/// back to the queue, and nothing acknowledged is lost.
public final class EventDispatcher: Service {
    /// Where and how the dispatcher consumes.
    public struct Configuration: Sendable {
        /// The queue to consume (declared as a durable quorum queue).
        public var queue: String
        /// The topic exchange events are published to (declared durable).
        public var exchange: String
        /// Binding keys from the exchange to the queue; `nil` binds the routing keys of the
        /// registered event types.
        public var bindings: [String]?
        /// Most unacknowledged deliveries, and so most handlers running at once.
        public var prefetch: UInt16 = 8
        /// Attempts before a failing event is dead-lettered (1 = no retry).
        public var maxAttempts: Int = 3
        /// How long a graceful shutdown waits for handlers in flight.
        public var shutdownDeadline: Duration = .seconds(10)
        /// How events are decoded.
        public var codec: any EventCodec = JSONEventCodec()
        /// Declare the exchange, queues and bindings on start (the default). Turn it off when
        /// something else owns the topology; the queue must then exist, and dead letters need
        /// ``deadLetterExchange``.
        public var declaresTopology = true
        /// Run the consumer loop and the handlers on the connection's own thread
        /// (`AMQPConnection.taskExecutor`) instead of Swift's cooperative threads: no thread
        /// switch or wake-up per event, the fastest way through many small events. Only for
        /// handlers that never block (they may `await`): while one runs, the connection reads
        /// nothing. Off by default.
        public var runsHandlersOnConnectionThread = false
        /// Called once the topology is declared and the consumer runs (e.g. to report readiness).
        public var onReady: (@Sendable () -> Void)?

        /// The exchange that takes dead letters: `<queue>.dead-letter` (fanout, durable).
        public var deadLetterExchange: String { queue + ".dead-letter" }
        /// The queue dead letters end up in: `<queue>.dead-letter` (durable).
        public var deadLetterQueue: String { queue + ".dead-letter" }

        /// A configuration for `queue`, bound to `exchange` with `bindings`.
        public init(queue: String, exchange: String, bindings: [String]? = nil) {
            self.queue = queue
            self.exchange = exchange
            self.bindings = bindings
        }
    }

    /// Header names the dispatcher writes on dead-lettered messages.
    public enum DeadLetterHeader {
        /// Why: `unknown-type`, `undecodable` or `retries-exhausted`.
        public static let reason = "x-dead-letter-reason"
        /// The error's description (the handler's error, or the decoding error).
        public static let error = "x-dead-letter-error"
        /// How many times it was delivered.
        public static let attempts = "x-dead-letter-attempts"
        /// The queue it was consumed from.
        public static let queue = "x-dead-letter-queue"
        /// The exchange and routing key it was originally published with.
        public static let exchange = "x-dead-letter-original-exchange"
        /// See ``exchange``.
        public static let routingKey = "x-dead-letter-original-routing-key"
    }

    /// Header names the dispatcher writes on the copies it publishes to retry an event.
    public enum RetryHeader {
        /// How many handlings of the event failed so far (an integer).
        public static let failedAttempts = "x-failed-attempts"
        /// The exchange the event was first published to (the copy goes straight to the queue).
        public static let originalExchange = "x-original-exchange"
        /// The routing key the event was first published with; handlers and dead letters see it.
        public static let originalRoutingKey = "x-original-routing-key"
    }

    let connectionConfiguration: AMQPConnection.Configuration
    /// The dispatcher's configuration.
    public let configuration: Configuration
    let handlers: EventHandlers
    let logger: Logger
    /// `rabbitmq_events_handler_duration` (dimension `queue`): how long handlers take,
    /// successful or not.
    let handlerDuration: Metrics.Timer

    /// Creates a dispatcher; nothing happens until ``run()``.
    public init(
        connection: AMQPConnection.Configuration, configuration: Configuration, handlers: EventHandlers,
        logger: Logger = Logger(label: "swift-rabbitmq.events", factory: { _ in SwiftLogNoOpLogHandler() })
    ) {
        self.connectionConfiguration = connection
        self.configuration = configuration
        self.handlers = handlers
        var logger = logger
        logger[metadataKey: "amqp.queue"] = .string(configuration.queue)
        self.logger = logger
        self.handlerDuration = Metrics.Timer(
            label: "rabbitmq_events_handler_duration", dimensions: [("queue", configuration.queue)])
    }

    /// Connects, declares the topology and dispatches until graceful shutdown or cancellation.
    ///
    /// - Throws: what connecting or declaring throws, and the connection's close reason if the
    ///   connection fails while consuming.
    public func run() async throws {
        let connection = try await AMQPConnection.open(connectionConfiguration, logger: logger)
        do {
            try await dispatch(on: connection)
        } catch {
            await connection.close()
            if Task.isCancelled { return }
            throw error
        }
        await connection.close()
    }

    private func dispatch(on connection: AMQPConnection) async throws {
        if configuration.declaresTopology {
            try await connection.withChannel { try await self.declareTopology(on: $0) }
        }
        let publishing = try await connection.openChannel()  // retries and dead letters, confirmed
        try await publishing.confirmSelect()
        let channel = try await connection.openChannel()
        try await channel.basicQos(prefetchCount: configuration.prefetch)
        let consumer = try await channel.consume(queue: configuration.queue)
        logger.debug("dispatching", metadata: ["amqp.consumer": .string(consumer.tag)])
        configuration.onReady?()

        // Handlers are child tasks: they inherit the preference (none unless configured).
        let executor = configuration.runsHandlersOnConnectionThread ? connection.taskExecutor : nil
        try await withTaskExecutorPreference(executor) {
            try await consume(consumer, on: connection, publishing: publishing)
        }
    }

    /// The consumer loop: a handler task per delivery, at most the prefetch at a time.
    private func consume(_ consumer: AMQPConsumer, on connection: AMQPConnection, publishing: AMQPChannel) async throws {
        try await withGracefulShutdownHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                var running = 0
                for try await delivery in consumer {
                    // The prefetch bounds deliveries; this bounds handlers the same way.
                    if running >= Int(configuration.prefetch) {
                        try await group.next()
                        running -= 1
                    }
                    group.addTask { await self.handle(delivery, publishing: publishing) }
                    running += 1
                }
                if Task.isCancelled {
                    group.cancelAll()
                    return
                }
                try await drain(&group, running: running, connection: connection)
            }
        } onGracefulShutdown: {
            Task { try? await consumer.cancel() }
        }
    }

    /// Graceful shutdown: the consumer is cancelled; wait for the handlers in flight, at most
    /// the deadline, then cancel the stragglers (their deliveries go back to the queue).
    private func drain(
        _ group: inout ThrowingTaskGroup<Void, any Error>, running: Int, connection: AMQPConnection
    ) async throws {
        guard running > 0 else { return }
        struct DeadlinePassed: Error {}
        let deadline = configuration.shutdownDeadline
        group.addTask {
            try await Task.sleep(for: deadline)
            throw DeadlinePassed()
        }
        var remaining = running
        do {
            while remaining > 0 {
                try await group.next()
                remaining -= 1
            }
            group.cancelAll()  // the deadline timer
        } catch is DeadlinePassed {
            logger.info("shutdown deadline passed with handlers in flight", metadata: ["handlers": "\(remaining)"])
            await connection.close()  // their deliveries return to the queue
            group.cancelAll()
        } catch is CancellationError {}
    }

    private func declareTopology(on channel: AMQPChannel) async throws {
        try await channel.exchangeDeclare(configuration.exchange, type: .topic, durable: true)
        try await channel.exchangeDeclare(configuration.deadLetterExchange, type: .fanout, durable: true)
        try await channel.queueDeclare(configuration.deadLetterQueue, durable: true)
        try await channel.queueBind(configuration.deadLetterQueue, exchange: configuration.deadLetterExchange)
        try await channel.queueDeclare(
            configuration.queue, durable: true,
            arguments: [
                "x-queue-type": "quorum",
                "x-dead-letter-exchange": .string(configuration.deadLetterExchange),
                // A backstop should the dispatcher itself never get to dead-letter a message
                // (e.g. a handler that crashes the process): the broker does it.
                "x-delivery-limit": .int64(Int64(configuration.maxAttempts) + 2),
            ])
        for key in configuration.bindings ?? handlers.routingKeys {
            try await channel.queueBind(configuration.queue, exchange: configuration.exchange, routingKey: key)
        }
    }

    // MARK: - One delivery

    func handle(_ delivery: AMQPDelivery, publishing: AMQPChannel) async {
        let headers = delivery.properties.headers ?? [:]
        // Failed handlings, counted by the dispatcher in the copies it retries with; quorum
        // queues also count deliveries that were never acknowledged (a crash, a lost connection).
        let failed = max(headers[RetryHeader.failedAttempts]?.int64Value ?? 0, 0)
        let redeliveries = max(headers["x-delivery-count"]?.int64Value ?? 0, 0)
        // Saturating: anyone may have written these headers.
        let attempt = Int(clamping: min(failed, Int64(Int32.max)) + min(redeliveries, Int64(Int32.max)) + 1)
        // A retried copy came through the default exchange: the original route is in headers.
        let routingKey = headers[RetryHeader.originalRoutingKey]?.stringValue ?? delivery.routingKey
        let type = delivery.properties.type
        guard let entry = handlers.entry(type: type, routingKey: routingKey) else {
            let what = type.map { "type '\($0)'" } ?? "routing key '\(routingKey)'"
            await deadLetter(delivery, reason: "unknown-type", error: "no handler for \(what)", attempts: attempt, publishing)
            return
        }
        let event: any Sendable
        do {
            event = try entry.decode(configuration.codec, delivery.body)
        } catch {
            await deadLetter(delivery, reason: "undecodable", error: "\(error)", attempts: attempt, publishing)
            return
        }
        let context = EventContext(
            messageID: delivery.properties.messageID, eventType: type, routingKey: routingKey,
            redelivered: delivery.redelivered, attempt: attempt, headers: headers, properties: delivery.properties)
        do {
            let started = ContinuousClock.now
            defer { handlerDuration.record(duration: started.duration(to: .now)) }
            let instrument = InstrumentationSystem.instrument
            if instrument is NoOpInstrument {
                // Nothing bootstrapped (the default): no trace to continue, no span to start.
                try await entry.handle(event, context)
            } else {
                // The handler's span continues the publisher's trace, from the message headers.
                var trace = ServiceContext.topLevel
                instrument.extract(headers, into: &trace, using: TraceContextExtractor())
                try await withSpan("\(type ?? routingKey) process", context: trace, ofKind: .consumer) { span in
                    span.attributes["messaging.system"] = "rabbitmq"
                    span.attributes["messaging.message.id"] = delivery.properties.messageID
                    try await entry.handle(event, context)
                }
            }
        } catch {
            if attempt >= configuration.maxAttempts {
                await deadLetter(delivery, reason: "retries-exhausted", error: "\(error)", attempts: attempt, publishing)
            } else {
                logger.debug("handler failed; retrying", metadata: ["attempt": "\(attempt)", "error": "\(error)"])
                await retry(delivery, failedAttempts: attempt, publishing)
            }
            return
        }
        do {
            try await delivery.ack()
        } catch {
            // The channel closed: the broker redelivers it, and the handler runs again.
            logger.debug("could not acknowledge", metadata: ["error": "\(error)"])
        }
    }

    /// Publishes a copy of the message to the back of the queue with the failed attempts so far,
    /// waits for the confirm, then acknowledges the original. If that fails, the original goes
    /// back to the broker instead (`basic.reject`, which quorum queues count).
    private func retry(_ delivery: AMQPDelivery, failedAttempts: Int, _ channel: AMQPChannel) async {
        var properties = delivery.properties
        var headers = properties.headers ?? [:]
        headers[RetryHeader.failedAttempts] = .int64(Int64(failedAttempts))
        if headers[RetryHeader.originalRoutingKey] == nil {
            headers[RetryHeader.originalExchange] = .string(delivery.exchange)
            headers[RetryHeader.originalRoutingKey] = .string(delivery.routingKey)
        }
        // The broker's count belongs to the original; the copy's attempts are in our header.
        headers["x-delivery-count"] = nil
        properties.headers = headers
        do {
            try await channel.publish(delivery.body, exchange: "", routingKey: configuration.queue, properties: properties)
            try await delivery.ack()
        } catch {
            logger.debug("could not retry through a copy; rejected", metadata: ["error": "\(error)"])
            try? await delivery.reject(requeue: true)
        }
    }

    /// Publishes the message to the dead-letter exchange with the reason, waits for the
    /// confirm, then acknowledges the original. If that fails, the original is requeued instead:
    /// never dropped.
    private func deadLetter(
        _ delivery: AMQPDelivery, reason: String, error: String, attempts: Int, _ channel: AMQPChannel
    ) async {
        var properties = delivery.properties
        var headers = properties.headers ?? [:]
        headers[DeadLetterHeader.reason] = .string(reason)
        headers[DeadLetterHeader.error] = .string(String(error.prefix(1000)))
        headers[DeadLetterHeader.attempts] = .int64(Int64(attempts))
        headers[DeadLetterHeader.queue] = .string(configuration.queue)
        let exchange = headers[RetryHeader.originalExchange]?.stringValue ?? delivery.exchange
        let routingKey = headers[RetryHeader.originalRoutingKey]?.stringValue ?? delivery.routingKey
        headers[DeadLetterHeader.exchange] = .string(exchange)
        headers[DeadLetterHeader.routingKey] = .string(routingKey)
        // Counts of this life of the event: sent back once fixed, it starts again at attempt 1.
        headers[RetryHeader.failedAttempts] = nil
        headers[RetryHeader.originalExchange] = nil
        headers[RetryHeader.originalRoutingKey] = nil
        headers["x-delivery-count"] = nil
        properties.headers = headers
        logger.debug("dead-lettering", metadata: ["reason": .string(reason), "error": .string(error)])
        do {
            try await channel.publish(
                delivery.body, exchange: configuration.deadLetterExchange, routingKey: routingKey,
                properties: properties)
            try await delivery.ack()
        } catch {
            logger.debug("could not dead-letter; rejected", metadata: ["error": "\(error)"])
            try? await delivery.reject(requeue: true)
        }
    }
}
