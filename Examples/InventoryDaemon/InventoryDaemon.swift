import ArgumentParser
import Foundation
import Logging
import OrderEvents
import RabbitMQ
import RabbitMQEvents
import ServiceLifecycle

/// Consumes order events from the `inventory` queue: reserves stock on `OrderCreated`, releases
/// it on `OrderCancelled`. Retries, dead-lettering, concurrency and graceful shutdown come from
/// `EventDispatcher`; SIGTERM or SIGINT stop it cleanly (exit 0).
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

    @Option(help: "Append the message id of each handled event to this file.")
    var record: String?

    @Option(help: "Seconds to keep trying the first connection (a broker still starting).")
    var connectRetry = 60

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "inventory-daemon")
        logger.logLevel = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) } ?? .info

        let environment = ProcessInfo.processInfo.environment
        let url = url ?? environment["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/%2f"
        var connection = try AMQPConnection.Configuration(url: url)
        connection.connectionName = "inventory-daemon"
        // In a container deployment the broker may still be starting: keep trying for a while.
        connection.recovery.firstConnectionRetry = .seconds(connectRetry)
        var configuration = EventDispatcher.Configuration(
            queue: queue ?? environment["INVENTORY_QUEUE"] ?? "inventory", exchange: exchange, bindings: binding)
        configuration.prefetch = prefetch
        configuration.maxAttempts = maxAttempts
        configuration.shutdownDeadline = .seconds(shutdownDeadline)
        let queueName = configuration.queue
        configuration.onReady = { say("ready: consuming \(queueName)") }

        let inventory = Inventory()
        let recorder = try record.map { try HandledLog(path: $0) }
        let work = Duration.milliseconds(workMilliseconds)
        var handlers = EventHandlers()
        handlers.on(OrderCreated.self) { order, context in
            if work > .zero { try await Task.sleep(for: work) }
            let handled = await inventory.reserve(order)
            recorder?.append(context.messageID ?? "-")
            say("reserved \(order.items.map { "\($0.quantity)x\($0.sku)" }.joined(separator: ", ")) for \(order.orderID) (#\(handled), attempt \(context.attempt))")
        }
        handlers.on(OrderCancelled.self) { cancellation, context in
            if work > .zero { try await Task.sleep(for: work) }
            await inventory.release(cancellation)
            recorder?.append(context.messageID ?? "-")
            say("released stock of \(cancellation.orderID) (\(cancellation.reason))")
        }

        let dispatcher = EventDispatcher(
            connection: connection, configuration: configuration, handlers: handlers, logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: dispatcher)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        say("stopped cleanly; \(await inventory.totalReserved) units still reserved")
    }
}

/// Appends lines to a file, one write per line (safe across the daemon's concurrent handlers).
final class HandledLog: Sendable {
    private let handle: FileHandle

    init(path: String) throws {
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
        }
        handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seekToEnd()
    }

    func append(_ line: String) {
        handle.write(Data((line + "\n").utf8))
    }
}

/// Writes a line to standard output at once (print buffers whole blocks when output goes to a
/// pipe or file, so a supervising script would not see progress).
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
