import ArgumentParser
import Foundation
import GRDB
import Hummingbird
import Logging
import OrderEvents
import PostgresNIO
import Prometheus
import RabbitMQ
import RabbitMQEvents
import RabbitMQEventsPostgres
import RabbitMQEventsSQLite
import ServiceLifecycle
import ServiceSupport

/// Consumes order events from the `inventory` queue: reserves stock on `OrderCreated` (or rejects
/// the order when an item is out of stock) and answers with `InventoryReserved` or
/// `InventoryRejected`; releases the stock on `OrderCancelled`. Stock, orders, the inbox and the
/// outbox live in one SQLite database: each event's effect, its inbox record and its answer
/// commit in one transaction (a redelivered event changes nothing and answers nothing twice),
/// and an `OutboxRelay` publishes the answers. Order per order id, retries, dead-lettering,
/// concurrency and graceful shutdown come from `EventDispatcher`; SIGTERM or SIGINT stop it
/// cleanly (exit 0). Several replicas may share one database file. `--http-port` serves
/// `/health` and `/metrics`.
@main
struct InventoryDaemon: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inventory-daemon", abstract: "Reserve stock for order events from RabbitMQ.")

    @Option(help: "AMQP URI (default: $AMQP_URL, then amqp://guest:guest@127.0.0.1:5672/%2f).")
    var url: String?

    @Option(help: "The queue to consume (default: $INVENTORY_QUEUE, then inventory).")
    var queue: String?

    @Option(help: "The topic exchange order events are published to.")
    var exchange = "orders"

    @Option(help: "Binding key from the exchange to the queue (repeatable).")
    var binding: [String] = ["order.*"]

    @Option(help: "Most events handled at once.")
    var prefetch: UInt16 = 8

    @Option(help: "Attempts before a failing event is dead-lettered.")
    var maxAttempts = 3

    @Option(help: "Seconds a shutdown waits for events in flight.")
    var shutdownDeadline = 10

    @Option(help: "Milliseconds each event takes to handle (to watch concurrency and shutdown).")
    var workMilliseconds = 0

    @Option(help: "Partition queues shared by the daemon's replicas (0: one queue, no sharing).")
    var partitions = 0

    @Option(help: "The name the daemon's connections carry on the broker.")
    var connectionName = "inventory-daemon"

    @Option(help: "The database of stock, orders, inbox and outbox: a SQLite file (created when missing) or a postgres:// URL.")
    var database = "inventory.sqlite"

    @Option(help: "Initial stock of a new database, e.g. SKU-100=50,SKU-101=20 (unlisted SKUs are unlimited).")
    var stock: String?

    @Option(help: "Append '<unix-time-ns> <message-id> <event-type> <order-id>' for each event applied (not for duplicates).")
    var record: String?

    @Option(help: "Serve /health and /metrics on this port of 127.0.0.1 (0: any free port; none by default).")
    var httpPort: Int?

    @Flag(inversion: .prefixedNo, help: "Publish InventoryReserved/InventoryRejected answers (through the outbox).")
    var answers = true

    @Option(help: "Seconds to keep trying the first connection (a broker still starting).")
    var connectRetry = 60

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let registry = httpPort != nil ? bootstrapPrometheus() : nil
        var logger = Logger(label: "inventory-daemon")
        logger.logLevel = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) } ?? .info

        let environment = ProcessInfo.processInfo.environment
        let url = url ?? environment["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/%2f"
        var connection = try AMQPConnection.Configuration(url: url)
        connection.connectionName = connectionName
        // In a container deployment the broker may still be starting: keep trying for a while.
        connection.recovery.firstConnectionRetry = .seconds(connectRetry)
        var configuration = EventDispatcher.Configuration(
            queue: queue ?? environment["INVENTORY_QUEUE"] ?? "inventory", exchange: exchange, bindings: binding)
        configuration.prefetch = prefetch
        configuration.retry.maxAttempts = maxAttempts
        configuration.shutdownDeadline = .seconds(shutdownDeadline)
        configuration.partitions = partitions
        let queueName = configuration.queue
        let sharing = partitions > 0 ? " (\(partitions) partitions shared with the other replicas)" : ""
        configuration.onReady = { say("ready: consuming \(queueName)\(sharing)") }

        // SQLite by default; PostgreSQL for a postgres:// URL (its client runs beside the services).
        let inventory: any InventoryStore
        let postgres: PostgresClient?
        if PostgresEventStore.isPostgresURL(database) {
            let client = PostgresClient(configuration: try PostgresEventStore.configuration(url: database), backgroundLogger: logger)
            postgres = client
            inventory = PostgresInventory(store: PostgresEventStore(client: client, logger: logger), logger: logger)
        } else {
            postgres = nil
            inventory = SQLiteInventory(store: try SQLiteEventStore(path: database))
        }
        try await withThrowingDiscardingTaskGroup { group in
            if let postgres { group.addTask { await postgres.run() } }
            try await serve(inventory, connection: connection, configuration: configuration, registry: registry, logger: logger)
            group.cancelAll()
        }
    }

    /// Consumes order events, publishes the answers and serves HTTP until SIGTERM or SIGINT.
    private func serve(
        _ inventory: any InventoryStore, connection: AMQPConnection.Configuration,
        configuration: EventDispatcher.Configuration, registry: PrometheusCollectorRegistry?, logger: Logger
    ) async throws {
        try await inventory.prepare(initialStock: try parseStock(stock))
        logger.info("database open; connecting", metadata: ["queue": "\(configuration.queue)"])
        let recorder = try record.map { try HandledLog(path: $0) }
        let work = Duration.milliseconds(workMilliseconds)
        let answerExchange = answers ? exchange : nil
        var handlers = EventHandlers()
        handlers.on(OrderCreated.self) { order, context in
            if work > .zero { try await Task.sleep(for: work) }
            let messageID = context.messageID ?? ""
            // The effect, the inbox record and the answer commit together (the continuation).
            let outcome = try await inventory.apply(order, context, answerTo: answerExchange)
            guard case .handled(let effect) = outcome else { return say(duplicateLine(context)) }
            recorder?.append(messageID: messageID, type: OrderCreated.eventType, orderID: order.orderID)
            let items = order.items.map { "\($0.quantity)x\($0.sku)" }.joined(separator: ", ")
            var line = "\(effect.name) \(items) for \(order.orderID) (attempt \(context.attempt))"
            if case .rejected(let reason) = effect { line += ": \(reason)" }
            say(line)
        }
        handlers.on(OrderCancelled.self) { cancellation, context in
            if work > .zero { try await Task.sleep(for: work) }
            let messageID = context.messageID ?? ""
            let outcome = try await inventory.apply(cancellation, context)
            guard case .handled(let effect) = outcome else { return say(duplicateLine(context)) }
            recorder?.append(messageID: messageID, type: OrderCancelled.eventType, orderID: cancellation.orderID)
            say("\(effect.name) stock of \(cancellation.orderID) (\(cancellation.reason))")
        }

        let dispatcher = EventDispatcher(
            connection: connection, configuration: configuration, handlers: handlers, logger: logger)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: dispatcher)]
        var relayConfiguration = OutboxRelay.Configuration()
        relayConfiguration.name = "inventory-daemon"
        let relay = OutboxRelay(connection: connection, store: inventory.outbox, configuration: relayConfiguration, logger: logger)
        if answers { services.insert(.init(service: relay), at: 0) }
        if let httpPort, let registry {
            let router = Router()
            router.addOperationalRoutes(registry: registry) { [answers] in
                var checks = ["database": await inventory.isHealthy(), "broker": dispatcher.isConsuming]
                if answers { checks["outboxRelay"] = relay.isConnected }
                return checks
            }
            let app = Application(
                router: router, configuration: .init(address: .hostname("127.0.0.1", port: httpPort), serverName: "inventory-daemon"),
                onServerRunning: { say("http listening on http://127.0.0.1:\($0.localAddress?.port ?? httpPort)") },
                logger: logger)
            services.append(.init(service: app))
        }
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        say("stopped cleanly; \(try await inventory.totalReserved()) units reserved")
    }
}

/// `--stock SKU-100=50,SKU-101=20`.
func parseStock(_ text: String?) throws -> [String: Int] {
    var stock: [String: Int] = [:]
    for entry in (text ?? "").split(separator: ",") {
        let parts = entry.split(separator: "=")
        guard parts.count == 2, let quantity = Int(parts[1]), quantity >= 0 else {
            throw ValidationError("--stock wants SKU=QUANTITY pairs separated by commas, not '\(entry)'")
        }
        stock[String(parts[0])] = quantity
    }
    return stock
}

/// Appends one line per applied event to a file, one write per line (safe across the daemon's
/// concurrent handlers, and across processes appending to the same file).
final class HandledLog: Sendable {
    private let descriptor: Int32

    init(path: String) throws {
        descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        guard descriptor >= 0 else { throw ValidationError("cannot open \(path) for appending") }
    }

    func append(messageID: String, type: String, orderID: String) {
        let nanoseconds = UInt64(Date().timeIntervalSince1970 * 1e9)
        let line = Array("\(nanoseconds) \(messageID) \(type) \(orderID)\n".utf8)
        _ = line.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
    }
}

/// Writes a line to standard output at once (print buffers whole blocks when output goes to a
/// pipe or file, so a supervising script would not see progress).
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
