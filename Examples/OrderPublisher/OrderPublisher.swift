import ArgumentParser
import Foundation
import Logging
import OrderEvents
import RabbitMQ
import RabbitMQEvents

/// Publishes `OrderCreated` events (and cancels every few orders) to the `orders` exchange, with
/// publisher confirms, then reports how many the broker confirmed. Exits 0 once every event is
/// confirmed, 1 if any was refused.
@main
struct OrderPublisher: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "order-publisher", abstract: "Publish order events to RabbitMQ.")

    @Option(help: "AMQP URI (default: $AMQP_URL, then amqp://guest:guest@127.0.0.1:5672/%2f).")
    var url: String?

    @Option(help: "Orders to create.")
    var count = 10

    @Option(help: "Events per second; 0 publishes as fast as confirms allow.")
    var rate: Double = 0

    @Option(help: "Cancel every Nth order (0: never).")
    var cancelEvery = 5

    @Option(help: "The topic exchange to publish to.")
    var exchange = "orders"

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let url = url ?? ProcessInfo.processInfo.environment["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/%2f"
        var configuration = try AMQPConnection.Configuration(url: url)
        configuration.connectionName = "order-publisher"
        // In a container deployment the broker may still be starting: keep trying for a while.
        configuration.recovery.firstConnectionRetry = .seconds(60)
        let connection = try await AMQPConnection.open(configuration)
        let publisher = try await EventPublisher(connection: connection, exchange: exchange, appID: "order-publisher")
        let run = String(UInt64(Date().timeIntervalSince1970 * 1000), radix: 36)
        let start = ContinuousClock.now
        var confirmations: [PublishConfirmation] = []

        for index in 0..<count {
            if rate > 0 { try await Task.sleep(until: start + .seconds(Double(index) / rate)) }
            let items = [OrderItem(sku: "SKU-\(100 + index % 7)", quantity: 1 + index % 3, price: 19.99)]
            let order = OrderCreated(orderID: "ord-\(run)-\(index)", customerID: "cust-\(index % 100)", items: items)
            confirmations.append(try await publisher.publishWithoutWaiting(order, messageID: "\(order.orderID)-created"))
            if cancelEvery > 0, index % cancelEvery == cancelEvery - 1 {
                let cancelled = OrderCancelled(orderID: order.orderID, items: items, reason: "customer request")
                confirmations.append(
                    try await publisher.publishWithoutWaiting(cancelled, messageID: "\(order.orderID)-cancelled"))
            }
        }

        var failures: [String] = []
        for confirmation in confirmations {
            do { try await confirmation.wait() } catch { failures.append("\(error)") }
        }
        await connection.close()
        say("published \(confirmations.count) events: \(confirmations.count - failures.count) confirmed, \(failures.count) failed")
        if let first = failures.first {
            say("first failure: \(first)")
            throw ExitCode.failure
        }
    }
}

/// Writes a line to standard output at once (print buffers whole blocks when output goes to a
/// pipe or file, so a supervising script would not see progress).
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
