import Logging
import Metrics
import Tracing
import RabbitMQ
import ServiceLifecycle

/// Consumes one queue and runs the handler registered for each event's type, with the policy an
/// at-least-once consumer needs written once:
///
/// - **Order per key**: events with the same partition key (``EventHeader/partitionKey``, written
///   by ``EventPublisher`` for event types that name one) are handled one at a time, in delivery
///   order; other keys, and events without a key, run concurrently, at most
///   ``Configuration/prefetch`` handlers in all.
/// - **Success**: the handler returns, the delivery is acknowledged.
/// - **Failure**: the handler throws (or outlives ``Configuration/handlerTimeout``); it is retried
///   in place after the backoff of ``Configuration/retry`` (events of its key wait, others go
///   on), then dead-lettered with the attempt count and the error. The dispatcher counts the
///   attempts itself, so the count is right on every queue type and broker version.
/// - **Poison**: a body that does not decode is dead-lettered at once with the reason; an event
///   type with no handler follows ``Configuration/unknownTypes``. Nothing is requeued in a loop;
///   nothing is dropped unless you ask for it.
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
/// and a dead-letter exchange and queue (`<queue>.dead-letter`).
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
/// With ``Configuration/partitions`` set, several replicas share partition queues and the order
/// per key holds across them (see the article *Ordered, effectively-once handling across
/// replicas*).
///
/// As a swift-service-lifecycle `Service`: on graceful shutdown it starts no handler any more,
/// lets the handlers in flight finish and acknowledge within ``Configuration/shutdownDeadline``,
/// then cancels its consumer (so the broker applies the last acknowledgements) and closes its
/// channel, which gives every delivery it still holds back to the queue; a partitioned
/// dispatcher releases each partition so that the next replica gets what it held first, in
/// order. On task cancellation it stops at once. Either way nothing acknowledged is lost.
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
        /// The name under which an ``EventInbox`` records the events this dispatcher handled: the
        /// queue's name unless set. Replicas consuming the same queue share it.
        public var consumerGroup: String {
            get { explicitConsumerGroup ?? queue }
            set { explicitConsumerGroup = newValue }
        }
        private var explicitConsumerGroup: String?
        /// Most unacknowledged deliveries, and so most handlers running at once.
        public var prefetch: UInt16 = 8
        /// How a failing event is retried before it is dead-lettered.
        public var retry: RetryPolicy = .default
        /// The longest a handler may run; one that takes longer is cancelled and the attempt counts
        /// as failed (cancellation is cooperative: the next attempt starts once the handler
        /// returns). `nil` (the default): no limit.
        public var handlerTimeout: Duration?
        /// What becomes of an event whose type no handler is registered for.
        public var unknownTypes: UnknownTypePolicy = .deadLetter
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
        /// Partition queues for daemon replicas: `0` (the default) consumes one queue; `N` declares
        /// `N` partition queues (`<queue>.partition-0` ...; quorum, single active consumer) fed
        /// by a consistent-hash exchange (`<queue>.partitions`) on the partition key, and shares
        /// them among the replicas running this configuration. Each key always lands in the same
        /// partition, and one replica at a time consumes a partition: the order per key holds
        /// across replicas, also while partitions move. Needs the broker's
        /// `rabbitmq_consistent_hash_exchange` plugin. Events without a partition key all land in
        /// one partition.
        public var partitions = 0
        /// How often replicas of a partitioned dispatcher announce themselves; a replica not heard
        /// from for 3.5 times this is taken for gone, and its partitions move to the others.
        public var replicaHeartbeat: Duration = .seconds(1)
        /// Called once the topology is declared and the consumer runs (e.g. to report readiness).
        public var onReady: (@Sendable () -> Void)?

        /// The exchange that takes dead letters: `<queue>.dead-letter` (fanout, durable).
        public var deadLetterExchange: String { queue + ".dead-letter" }
        /// The queue dead letters end up in: `<queue>.dead-letter` (durable).
        public var deadLetterQueue: String { queue + ".dead-letter" }
        /// The partition queue `index` of a partitioned topology: `<queue>.partition-<index>`.
        public func partitionQueue(_ index: Int) -> String { "\(queue).partition-\(index)" }
        /// The consistent-hash exchange of a partitioned topology: `<queue>.partitions`.
        public var partitionExchange: String { queue + ".partitions" }
        /// The fanout exchange the replicas of a partitioned dispatcher announce themselves on:
        /// `<queue>.replicas`.
        public var replicaExchange: String { queue + ".replicas" }

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

    /// What becomes of an event whose type no handler is registered for (a type added to the
    /// publishers before the consumers learnt it, say).
    public enum UnknownTypePolicy: Sendable, Hashable {
        /// Dead-letter it with the reason `unknown-type`, to be sent back once a handler exists.
        case deadLetter
        /// Acknowledge it and go on (logged at debug level): for queues bound to more event types
        /// than this consumer cares about.
        case acknowledge
    }

    let connectionConfiguration: AMQPConnection.Configuration
    /// The dispatcher's configuration.
    public let configuration: Configuration
    let handlers: EventHandlers
    let logger: Logger
    /// `rabbitmq_events_handler_duration` (dimension `queue`): how long handlers take,
    /// successful or not.
    let handlerDuration: Metrics.Timer
    /// Its connection, once open, and whether it consumes yet (for ``isConsuming``).
    let state = Locked<(connection: AMQPConnection?, consuming: Bool)>((nil, false))

    /// Whether the dispatcher is connected and consuming (its queue, or with partitions, taking
    /// part in sharing them): for a health check. False before ``run()`` got that far, while the
    /// connection recovers, and after it ends.
    public var isConsuming: Bool {
        state.withLock { $0.consuming && ($0.connection?.isOpen ?? false) }
    }

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
    /// When the broker fails to declare the topology for a reason of its own (541
    /// `INTERNAL_ERROR`, such as a new quorum queue whose Raft group did not elect a leader in
    /// time: `cluster_not_formed`), the dispatcher logs a warning and tries again on a new
    /// connection, after 1 s, then 2 s, doubling up to 30 s, until it succeeds or a graceful
    /// shutdown begins; ``isConsuming`` stays `false` meanwhile.
    ///
    /// - Throws: what connecting throws, a refusal of the topology (406 for arguments that
    ///   differ from an existing queue's, 403), and the connection's close reason if the
    ///   connection fails while consuming.
    public func run() async throws {
        var refusals = 0
        while true {
            guard let connection = try await AMQPConnection.openUnlessShuttingDown(connectionConfiguration, logger: logger)
            else { return }
            state.withLock { $0.connection = connection }
            do {
                defer { state.withLock { $0.consuming = false } }
                try await dispatch(on: connection)
                await connection.close()
                return
            } catch let failure as TopologyNotDeclared {
                await connection.close()
                refusals += 1
                let delay = TopologyRetry().delay(afterRefusals: refusals)
                logger.warning(
                    "the broker failed to declare the topology; trying again",
                    metadata: ["error": "\(failure.error)", "attempt": "\(refusals)", "delay": "\(delay)"])
                _ = try? await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
                if Task.isCancelled || Task.isShuttingDownGracefully { return }
            } catch {
                await connection.close()
                if Task.isCancelled { return }
                throw error
            }
        }
    }

    /// The broker failed to declare the topology in a way worth trying again.
    private struct TopologyNotDeclared: Error {
        let error: any Error
    }

    private func dispatch(on connection: AMQPConnection) async throws {
        if configuration.declaresTopology || configuration.partitions > 0 {
            logger.debug("declaring the topology")
            do {
                try await connection.withChannel { try await self.declareTopology(on: $0) }
            } catch where TopologyRetry.isTransient(error) {
                throw TopologyNotDeclared(error: error)
            }
        }
        logger.debug("topology ready")
        let publishing = try await connection.openChannel()  // dead letters, confirmed
        try await publishing.confirmSelect()
        // Handlers are child tasks: they inherit the preference (none unless configured).
        let executor = configuration.runsHandlersOnConnectionThread ? connection.taskExecutor : nil
        if configuration.partitions > 0 {
            try await withTaskExecutorPreference(executor) {
                try await dispatchPartitions(on: connection, publishing: publishing)
            }
            return
        }
        let channel = try await connection.openChannel()
        try await channel.basicQos(prefetchCount: configuration.prefetch)
        let consumer = try await channel.consume(queue: configuration.queue)
        logger.debug("dispatching", metadata: ["amqp.consumer": .string(consumer.tag)])
        state.withLock { $0.consuming = true }
        configuration.onReady?()
        let books = DispatchBooks()
        try await withTaskExecutorPreference(executor) {
            try await withGracefulShutdownHandler {
                try await consume(consumer, books: books, publishing: publishing)
            } onGracefulShutdown: {
                books.stop()  // at once: no handler starts after the shutdown was asked for
                Task {
                    await self.drain(books)
                    // Cancelled before the channel closes: a quorum queue applies the
                    // acknowledgements sent before the cancel, but may return messages whose
                    // acknowledgement was still on its way when the channel went (measured:
                    // about a third of the last 50 on RabbitMQ 3.10).
                    try? await consumer.cancel()
                    await channel.close()
                }
            }
        }
    }

    /// A consumer loop, until its channel closes: events without a key run at once, each in a
    /// task of its own; events with a key go through their key's lane (one task per lane,
    /// handling its events in turn). Once `books` is stopped nothing new starts, and the loop
    /// ends when the caller closes the channel (or its connection).
    func consume(_ consumer: AMQPConsumer, books: DispatchBooks, publishing: AMQPChannel) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            var tasks = 0
            do {
                for try await delivery in consumer {
                    // Once stopping, a delivery stays unacknowledged: closing the channel
                    // gives it back with everything else still held, in order.
                    guard !books.isStopping else { continue }
                    // Deliveries are bounded by the prefetch; this bounds tasks the same way.
                    if tasks >= Int(configuration.prefetch) {
                        try await group.next()
                        tasks -= 1
                    }
                    guard let key = delivery.properties.headers?[EventHeader.partitionKey]?.stringValue else {
                        books.started()
                        group.addTask {
                            await self.handle(delivery, publishing: publishing, books: books)
                            books.finished()
                        }
                        tasks += 1
                        continue
                    }
                    guard let first = books.admit(delivery, key: key) else { continue }
                    group.addTask { await self.runLane(key, first: first, books: books, publishing: publishing) }
                    tasks += 1
                }
            } catch where books.isStopping {
                // The channel closed as the shutdown (or a partition's release) asked.
            }
            if Task.isCancelled || books.isStopping { group.cancelAll() }
        }
    }

    /// Handles the events of one key in delivery order until its lane has none left.
    private func runLane(_ key: String, first: AMQPDelivery, books: DispatchBooks, publishing: AMQPChannel) async {
        var delivery = first
        while true {
            await handle(delivery, publishing: publishing, books: books)
            guard let next = books.finished(key: key) else { return }
            delivery = next
        }
    }

    /// After a stop: waits for the handlers in flight, at most the shutdown deadline. The caller
    /// then ends the channel, which gives back whatever was not acknowledged.
    func drain(_ books: DispatchBooks) async {
        let deadline = configuration.shutdownDeadline
        let finished = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await books.stopAndWaitUntilIdle()
                return true
            }
            group.addTask {
                try? await Task.sleep(for: deadline)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        if !finished {
            logger.info("shutdown deadline passed with handlers in flight", metadata: ["handlers": "\(books.inFlight)"])
        }
    }

    private func declareTopology(on channel: AMQPChannel) async throws {
        // The replicas' heartbeats (partitioned topology) are the dispatcher's own business.
        if configuration.partitions > 0 {
            try await channel.exchangeDeclare(configuration.replicaExchange, type: .fanout, durable: true)
        }
        guard configuration.declaresTopology else { return }
        try await channel.exchangeDeclare(configuration.exchange, type: .topic, durable: true)
        try await channel.exchangeDeclare(configuration.deadLetterExchange, type: .fanout, durable: true)
        try await channel.queueDeclare(configuration.deadLetterQueue, durable: true)
        try await channel.queueBind(configuration.deadLetterQueue, exchange: configuration.deadLetterExchange)
        let bindings = configuration.bindings ?? handlers.routingKeys
        var arguments: FieldTable = [
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": .string(configuration.deadLetterExchange),
            // A backstop should the dispatcher itself never get to dead-letter a message
            // (a handler that crashes the process every time): the broker does it.
            "x-delivery-limit": .int64(Int64(max(configuration.retry.maxAttempts, 1)) + 2),
        ]
        guard configuration.partitions > 0 else {
            try await channel.queueDeclare(configuration.queue, durable: true, arguments: arguments)
            for key in bindings {
                try await channel.queueBind(configuration.queue, exchange: configuration.exchange, routingKey: key)
            }
            return
        }
        // Partitioned: the topic exchange feeds a consistent-hash exchange on the partition key,
        // which spreads the keys over the partition queues (each key always to the same one).
        // One consumer at a time per partition queue, whichever replica it belongs to.
        try await channel.exchangeDeclare(
            configuration.partitionExchange, type: "x-consistent-hash", durable: true,
            arguments: ["hash-header": .string(EventHeader.partitionKey)])
        arguments["x-single-active-consumer"] = true
        for index in 0..<configuration.partitions {
            let queue = configuration.partitionQueue(index)
            try await channel.queueDeclare(queue, durable: true, arguments: arguments)
            // The binding key is the partition's number of points on the hash ring: all equal,
            // and enough of them that the keys spread evenly.
            try await channel.queueBind(queue, exchange: configuration.partitionExchange, routingKey: "100")
        }
        for key in bindings {
            try await channel.exchangeBind(
                destination: configuration.partitionExchange, source: configuration.exchange, routingKey: key)
        }
    }
}
