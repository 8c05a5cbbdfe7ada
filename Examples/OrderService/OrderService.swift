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

/// The order service: takes orders over HTTP, stores each with its `OrderCreated` in one SQLite
/// transaction (the transactional outbox), publishes them through an `OutboxRelay`, and moves
/// each order to `CONFIRMED` or `REJECTED` when the inventory answers (`InventoryReserved`,
/// `InventoryRejected`, handled in order per order id, once, through the inbox).
///
/// ```
/// POST /orders             {"customerId": "c-1", "items": [{"sku": "SKU-1", "quantity": 2}]}  → 202 {"orderId", "status"}
/// POST /orders/{id}/cancel → 202, 404 (unknown), 409 (already cancelled or rejected)
/// GET  /orders/{id}        → 200 {"orderId", "status", "items", "reason"?}
/// GET  /health             → 200, or 503 until the database is open and the broker connected
/// GET  /metrics            → Prometheus text format
/// ```
///
/// SIGTERM or SIGINT stop it cleanly: HTTP stops taking requests, the relay publishes what it
/// has claimed, and the consumer finishes the events in flight.
@main
struct OrderService: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "order-service", abstract: "Take orders over HTTP and follow them through RabbitMQ events.")

    @Option(help: "AMQP URI (default: $AMQP_URL, then amqp://guest:guest@127.0.0.1:5672/%2f).")
    var url: String?

    @Option(help: "The address HTTP listens on.")
    var host = "127.0.0.1"

    @Option(help: "The HTTP port (0: any free port, printed when listening).")
    var port = 8080

    @Option(help: "The database of orders, inbox and outbox: a SQLite file (created when missing) or a postgres:// URL.")
    var database = "orders.sqlite"

    @Option(help: "The topic exchange order and inventory events go through.")
    var exchange = "orders"

    @Option(help: "The queue of the inventory's answers.")
    var queue = "order-service"

    @Option(help: "The name the service's connections carry on the broker.")
    var connectionName = "order-service"

    @Option(help: "Seconds to keep trying the first connection (a broker still starting).")
    var connectRetry = 60

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "order-service")
        logger.logLevel = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) } ?? .info
        let registry = bootstrapPrometheus()

        let url = url ?? ProcessInfo.processInfo.environment["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/%2f"
        var connection = try AMQPConnection.Configuration(url: url)
        connection.connectionName = connectionName
        connection.recovery.firstConnectionRetry = .seconds(connectRetry)

        // SQLite by default; PostgreSQL for a postgres:// URL (its client runs beside the services).
        let orders: any OrderStore
        let postgres: PostgresClient?
        if PostgresEventStore.isPostgresURL(database) {
            let client = PostgresClient(configuration: try PostgresEventStore.configuration(url: database), backgroundLogger: logger)
            postgres = client
            orders = PostgresOrders(store: PostgresEventStore(client: client, logger: logger), exchange: exchange, logger: logger)
        } else {
            postgres = nil
            orders = SQLiteOrders(store: try SQLiteEventStore(path: database), exchange: exchange)
        }
        try await withThrowingDiscardingTaskGroup { group in
            if let postgres { group.addTask { await postgres.run() } }
            try await serve(orders, connection: connection, registry: registry, logger: logger)
            group.cancelAll()
        }
    }

    /// Runs the HTTP API, the consumer of the inventory's answers and the outbox relay until
    /// SIGTERM or SIGINT.
    private func serve(
        _ orders: any OrderStore, connection: AMQPConnection.Configuration, registry: PrometheusCollectorRegistry,
        logger: Logger
    ) async throws {
        try await orders.prepare()

        var handlers = EventHandlers()
        let log = logger
        handlers.on(InventoryReserved.self) { reserved, context in
            let outcome = try await orders.apply(reserved, context)
            guard case .handled(let status) = outcome else { return say(duplicateLine(context)) }
            log.info("inventory reserved", metadata: ["order": "\(reserved.orderID)", "status": "\(status?.rawValue ?? "unknown order")"])
        }
        handlers.on(InventoryRejected.self) { rejected, context in
            let outcome = try await orders.apply(rejected, context)
            guard case .handled(let status) = outcome else { return say(duplicateLine(context)) }
            log.info(
                "inventory rejected",
                metadata: ["order": "\(rejected.orderID)", "reason": "\(rejected.reason)", "status": "\(status?.rawValue ?? "unknown order")"])
        }
        var consumer = EventDispatcher.Configuration(queue: queue, exchange: exchange, bindings: ["inventory.*"])
        // Answers for orders are handled in order per order id (their partition key); an
        // answer of a type this version does not know is acknowledged, not dead-lettered.
        consumer.unknownTypes = .acknowledge
        let dispatcher = EventDispatcher(connection: connection, configuration: consumer, handlers: handlers, logger: logger)
        var relayConfiguration = OutboxRelay.Configuration()
        relayConfiguration.name = "order-service"
        let relay = OutboxRelay(connection: connection, store: orders.outbox, configuration: relayConfiguration, logger: logger)

        let router = Router()
        OrderRoutes.add(to: router, orders: orders)
        router.addOperationalRoutes(registry: registry) {
            ["database": await orders.isHealthy(), "broker": dispatcher.isConsuming, "outboxRelay": relay.isConnected]
        }
        let app = Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: "order-service"),
            onServerRunning: { channel in
                say("listening on http://\(host):\(channel.localAddress?.port ?? port)")
            },
            logger: logger)

        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: relay), .init(service: dispatcher), .init(service: app)],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        let counts = try await orders.countsByStatus()
        say("stopped cleanly; orders: " + counts.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.value) \($0.key.rawValue)" }.joined(separator: ", "))
    }
}

/// Writes a line to standard output at once (print buffers when output is a pipe or a file).
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
