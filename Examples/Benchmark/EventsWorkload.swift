import Foundation
import RabbitMQ
import RabbitMQEvents

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
        let finished: CheckedContinuation<Void, Never>? = lock.withLock {
            if event.items.count != 3 || !event.orderId.hasPrefix("ord-") { bad += 1 }
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
    /// Client CPU per event of the JSON alone (encode, then decode, with the codec the publisher
    /// and dispatcher use), measured before the timed section: the part of W5 that is not the
    /// engine's.
    static func jsonMicrosecondsPerEvent(samples: Int = 20_000) throws -> Double {
        let codec = JSONEventCodec()
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
        let exchange = "orders"
        do {
            try await channel.exchangeDeclare(exchange, type: .topic)
        } catch let error as AMQPError where error.code == .preconditionFailed {
            // A durable `orders` exists already (e.g. from the demo): route through it.
        }
        let setup = try await connection.openChannel()
        try await setup.queueBind(queue, exchange: exchange, routingKey: "order.*")

        let json = try jsonMicrosecondsPerEvent()
        let tally = Tally(target: options.count)
        var handlers = EventHandlers()
        handlers.on(BenchOrderCreated.self) { event, _ in tally.add(event) }
        var configuration = EventDispatcher.Configuration(queue: queue, exchange: exchange)
        configuration.declaresTopology = false
        configuration.prefetch = options.prefetch
        // The handler only counts: light enough for the connection's thread.
        configuration.runsHandlersOnConnectionThread = true
        let (ready, readyContinuation) = AsyncStream.makeStream(of: Void.self)
        configuration.onReady = { readyContinuation.yield() }
        let dispatcher = EventDispatcher(
            connection: try options.connectionConfiguration, configuration: configuration, handlers: handlers)
        let consuming = Task { try await dispatcher.run() }
        var readiness = ready.makeAsyncIterator()
        _ = await readiness.next()

        let publisherConnection = try await AMQPConnection.open(options.connectionConfiguration)
        // The contract's messages are transient and not mandatory, W5's too.
        let publisher = try await EventPublisher(
            connection: publisherConnection, exchange: exchange, declareExchange: false, window: options.window,
            deliveryMode: .transient, mandatory: false)
        let watch = Stopwatch()
        try await withTaskExecutorPreference(publisherConnection.taskExecutor) {
            var last: PublishConfirmation?
            for index in 0..<options.count {
                last = try await publisher.publishWithoutWaiting(BenchOrderCreated(index), messageID: "bench-\(index)")
            }
            try await last?.wait()
        }
        await tally.waitForAll()
        let (seconds, cpu) = (watch.seconds, watch.cpu)
        consuming.cancel()
        _ = try? await consuming.value
        await publisherConnection.close()
        return ["messages": "\(options.count)", "seconds": "\(seconds)", "cpu_seconds": "\(cpu)",
                "bad": "\(tally.badCount)", "json_cpu_us_per_event": "\(json)"]
    }
}
