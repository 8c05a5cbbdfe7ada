import Foundation
import RabbitMQ
import RabbitMQEvents
import Logging
import PostgresNIO
import RabbitMQEventsPostgres
import RabbitMQEventsSQLite

/// The W5 event of the contract (about 310 bytes as compact JSON).
struct BenchOrderCreated: AMQPEvent {
    static let eventType = "OrderCreated"
    static let routingKey = "order.created"

    struct Item: Codable, Sendable {
        var sku: String
        var qty: Int
        var price: Double
    }

    var orderId: String
    var customerId: String
    var items: [Item]
    var total: Double
    var createdAt: String
    var currency: String
    var channel: String
    var note: String

    init(_ index: Int) {
        let skus = ["SKU-100234", "SKU-200871", "SKU-993120"]
        let prices = [19.99, 5.25, 129.0]
        items = (0..<3).map { k in Item(sku: skus[k], qty: 1 + (index + k) % 5, price: prices[k]) }
        orderId = "ord-" + zeroPadded(index, width: 10)
        customerId = "cust-" + zeroPadded(index % 100_000, width: 6)
        total = (items.reduce(0) { $0 + Double($1.qty) * $1.price } * 100).rounded() / 100
        createdAt = "2026-11-21T12:00:" + zeroPadded((index / 1000) % 60, width: 2) + "." + zeroPadded(index % 1000, width: 3) + "Z"
        currency = "EUR"
        channel = "web"
        note = "benchmark order event"
    }
}

/// Counts checked events and reports when all arrived. A lock, not an actor: the handler's own
/// cost should not hide the library's.
/// `value` in decimal, zero-padded to `width` digits (`%0*d`): Foundation's `String(format:)`
/// costs more than a whole publish here.
func zeroPadded(_ value: Int, width: Int) -> String {
    let digits = String(value)
    return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
}

final class Tally: @unchecked Sendable {
    // @unchecked: every stored property is read and written only while holding `lock`.
    private let lock = NSLock()
    private var count = 0
    private var bad = 0
    private let target: Int
    private var waiter: CheckedContinuation<Void, Never>?

    init(target: Int) { self.target = target }

    func add(_ event: BenchOrderCreated) {
        add(items: event.items.count, orderID: event.orderId)
    }

    func add(_ event: BenchKeyedOrderCreated) {
        add(items: event.items.count, orderID: event.orderId)
    }

    private func add(items: Int, orderID: String) {
        let finished: CheckedContinuation<Void, Never>? = lock.withLock {
            if items != 3 || !orderID.hasPrefix("ord-") { bad += 1 }
            count += 1
            guard count == target else { return nil }
            defer { waiter = nil }
            return waiter
        }
        finished?.resume()
    }

    func waitForAll() async {
        await withCheckedContinuation { continuation in
            let done = lock.withLock {
                if count >= target { return true }
                waiter = continuation
                return false
            }
            if done { continuation.resume() }
        }
    }

    var badCount: Int { lock.withLock { bad } }
}

extension Benchmark {
    /// Client CPU per event of the JSON alone (encode, then decode, by default with the codec the
    /// publisher and dispatcher use), measured before the timed section: the part of W5 that is
    /// not the engine's.
    static func jsonMicrosecondsPerEvent(codec: any EventCodec = JSONEventCodec(), samples: Int = 20_000) throws -> Double {
        let events = (0..<samples).map(BenchOrderCreated.init)
        let watch = Stopwatch()
        for event in events {
            let decoded = try codec.decode(BenchOrderCreated.self, from: try codec.encode(event))
            guard decoded.items.count == 3 else { throw BenchError("the JSON round trip lost items") }
        }
        return watch.cpu / Double(samples) * 1_000_000
    }

    /// W5: typed events through `EventPublisher` and `EventDispatcher`, end to end.
    static func events(
        _ queue: String, options: Options, connection: AMQPConnection, channel: AMQPChannel
    ) async throws -> [String: String] {
        let json = try jsonMicrosecondsPerEvent(codec: options.eventCodec)
        let foundationJSON = try jsonMicrosecondsPerEvent(codec: FoundationJSONEventCodec())
        let tally = Tally(target: options.count)
        var handlers = EventHandlers()
        handlers.on(BenchOrderCreated.self) { event, _ in tally.add(event) }
        let (seconds, cpu) = try await runEvents(
            queue, options: options, connection: connection, channel: channel, handlers: handlers, tally: tally,
            // The handler only counts: light enough for the connection's thread.
            configure: { $0.runsHandlersOnConnectionThread = true }, event: BenchOrderCreated.init)
        return ["messages": "\(options.count)", "seconds": "\(seconds)", "cpu_seconds": "\(cpu)",
                "bad": "\(tally.badCount)", "codec": "\"\(options.codec)\"", "json_cpu_us_per_event": "\(json)",
                "foundation_json_cpu_us_per_event": "\(foundationJSON)"]
    }

    /// Typed events end to end: binds the run's queue to the `orders` exchange, starts a
    /// dispatcher with `handlers`, publishes `count` events (the contract's: transient, not
    /// mandatory, confirmed with the window) and waits until `tally` counted them all. Returns
    /// the timed section's wall-clock and CPU seconds.
    static func runEvents<Event: AMQPEvent>(
        _ queue: String, options: Options, connection: AMQPConnection, channel: AMQPChannel,
        handlers: EventHandlers, tally: Tally, configure: (inout EventDispatcher.Configuration) -> Void,
        event: @escaping @Sendable (Int) -> Event
    ) async throws -> (seconds: Double, cpu: Double) {
        let exchange = "orders"
        do {
            try await channel.exchangeDeclare(exchange, type: .topic)
        } catch let error as AMQPError where error.code == .preconditionFailed {
            // A durable `orders` exists already (e.g. from the demo): route through it.
        }
        let setup = try await connection.openChannel()
        try await setup.queueBind(queue, exchange: exchange, routingKey: "order.*")

        var configuration = EventDispatcher.Configuration(queue: queue, exchange: exchange)
        configuration.declaresTopology = false
        configuration.prefetch = options.prefetch
        configuration.codec = options.eventCodec
        configure(&configuration)
        let (ready, readyContinuation) = AsyncStream.makeStream(of: Void.self)
        configuration.onReady = { readyContinuation.yield() }
        let dispatcher = EventDispatcher(
            connection: try options.connectionConfiguration, configuration: configuration, handlers: handlers)
        let consuming = Task { try await dispatcher.run() }
        var readiness = ready.makeAsyncIterator()
        _ = await readiness.next()

        let publisherConnection = try await AMQPConnection.open(options.connectionConfiguration)
        let publisher = try await EventPublisher(
            connection: publisherConnection, exchange: exchange, declareExchange: false, window: options.window,
            codec: options.eventCodec, deliveryMode: .transient, mandatory: false)
        let watch = Stopwatch()
        try await withTaskExecutorPreference(publisherConnection.taskExecutor) {
            var last: PublishConfirmation?
            for index in 0..<options.count {
                last = try await publisher.publishWithoutWaiting(event(index), messageID: "bench-\(index)")
            }
            try await last?.wait()
        }
        await tally.waitForAll()
        let result = (watch.seconds, watch.cpu)
        consuming.cancel()
        _ = try? await consuming.value
        await publisherConnection.close()
        return result
    }
}

/// W6's event: W5's, with the customer as partition key (two events per customer in a run of
/// 200,000), so the dispatcher's ordered lanes are exercised.
struct BenchKeyedOrderCreated: AMQPEvent {
    static let eventType = "OrderCreated"
    static let routingKey = "order.created"

    var orderId: String
    var customerId: String
    var items: [BenchOrderCreated.Item]
    var total: Double
    var createdAt: String
    var currency: String
    var channel: String
    var note: String

    var partitionKey: String? { customerId }

    init(_ index: Int) {
        let event = BenchOrderCreated(index)
        (orderId, customerId, items, total) = (event.orderId, event.customerId, event.items, event.total)
        (createdAt, currency, channel, note) = (event.createdAt, event.currency, event.channel, event.note)
    }
}

extension Benchmark {
    /// W6 (not in the contract; there is no C counterpart): W5 with partition keys, ordered
    /// lanes, and every event recorded in the SQLite inbox (`SQLiteEventStore.once`: WAL mode,
    /// GRDB's `synchronous = NORMAL`, the calls waiting together in one transaction) before it is
    /// acknowledged. The handler checks the event like
    /// W5's, and the run checks that no customer's events were handled out of order.
    static func orderedEvents(
        _ queue: String, options: Options, connection: AMQPConnection, channel: AMQPChannel
    ) async throws -> [String: String] {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("rabbitmq-bench-\(getpid())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let store = try SQLiteEventStore(path: folder.appendingPathComponent("inbox.sqlite").path)
        let tally = Tally(target: options.count)
        let order = OrderCheck()
        var handlers = EventHandlers()
        handlers.on(BenchKeyedOrderCreated.self) { event, context in
            _ = try await store.once(context) { _ in () }
            order.handled(customer: event.customerId, order: event.orderId)
            tally.add(event)
        }
        let (seconds, cpu) = try await runEvents(
            queue, options: options, connection: connection, channel: channel, handlers: handlers, tally: tally,
            configure: { _ in }, event: BenchKeyedOrderCreated.init)
        return ["messages": "\(options.count)", "seconds": "\(seconds)", "cpu_seconds": "\(cpu)",
                "bad": "\(tally.badCount)", "out_of_order": "\(order.outOfOrder)"]
    }
}

/// Counts events handled before an earlier event of the same customer (the index in the order
/// id says which came first).
final class OrderCheck: Sendable {
    private struct State {
        var last: [String: Int] = [:]
        var late = 0
    }
    private let state = Locked(State())

    func handled(customer: String, order: String) {
        let index = Int(order.dropFirst(4)) ?? 0
        state.withLock { state in
            if let previous = state.last[customer], previous > index { state.late += 1 }
            state.last[customer] = max(state.last[customer] ?? index, index)
        }
    }

    var outOfOrder: Int { state.withLock { $0.late } }
}

extension Benchmark {
    /// W7 (this project's own, no C counterpart): the transactional outbox. `count` W5 events are
    /// written to an outbox in transactions of 100 (on PostgreSQL, each in one statement) while an
    /// `OutboxRelay` runs; timed from the
    /// first commit until the relay has published every event, had it confirmed and deleted it
    /// from the outbox. The outbox is a SQLite file of its own, or with `--database postgres://…`
    /// a PostgreSQL database (its server's CPU is not the client's, so not counted).
    static func outbox(_ queue: String, options: Options, channel: AMQPChannel) async throws -> [String: String] {
        let codec = options.eventCodec
        // Encoded inside the timed loop, as an application encodes each event it writes.
        func messages(_ indices: Range<Int>) throws -> [OutboxMessage] {
            try indices.map { index in
                var message = try OutboxMessage(BenchOrderCreated(index), exchange: "", messageID: "bench-\(index)", codec: codec)
                message.routingKey = queue  // straight to the run's queue
                return message
            }
        }
        if PostgresEventStore.isPostgresURL(options.database) {
            let client = PostgresClient(
                configuration: try PostgresEventStore.configuration(url: options.database),
                backgroundLogger: Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() }))
            let running = Task { await client.run() }
            defer { running.cancel() }
            let store = PostgresEventStore(client: client)
            try await store.migrate()
            try await client.query("TRUNCATE rabbitmq_outbox", logger: Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() }))
            return try await relay(through: store, options: options, channel: channel, queue: queue) { indices in
                let batch = try messages(indices)
                try await store.transaction { connection in try await store.enqueue(contentsOf: batch, on: connection) }
            } isEmpty: {
                try await store.outboxIsEmpty()
            }
        }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("rabbitmq-bench-\(getpid())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let store = try SQLiteEventStore(path: folder.appendingPathComponent("outbox.sqlite").path)
        return try await relay(through: store, options: options, channel: channel, queue: queue) { indices in
            let batch = try messages(indices)
            try await store.database.write { db in
                for message in batch { try store.enqueue(message, in: db) }
            }
        } isEmpty: {
            try await store.outboxDepth() == 0
        }
    }

    /// Writes the events in transactions of 100 with `write` while a relay publishes from
    /// `store`, until `isEmpty` (asked every millisecond).
    private static func relay(
        through store: any OutboxStore, options: Options, channel: AMQPChannel, queue: String,
        write: (Range<Int>) async throws -> Void, isEmpty: () async throws -> Bool
    ) async throws -> [String: String] {
        var configuration = OutboxRelay.Configuration()
        configuration.batchSize = options.window
        let relay = OutboxRelay(connection: try options.connectionConfiguration, store: store, configuration: configuration)
        let relaying = Task { try await relay.run() }
        let watch = Stopwatch()
        for start in stride(from: 0, to: options.count, by: 100) { try await write(start..<min(start + 100, options.count)) }
        while try await !isEmpty() { try await Task.sleep(for: .milliseconds(1)) }
        let (seconds, cpu) = (watch.seconds, watch.cpu)
        relaying.cancel()
        _ = try? await relaying.value
        let queued = try await channel.queueDeclare(queue, passive: true).messageCount
        guard queued == options.count else { throw BenchError("the queue holds \(queued) of \(options.count) events") }
        return ["messages": "\(options.count)", "seconds": "\(seconds)", "cpu_seconds": "\(cpu)"]
    }
}
