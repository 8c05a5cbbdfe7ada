import Foundation
import Metrics
import MetricsTestKit
import RabbitMQ
import Testing

/// The metrics backend of this test process, bootstrapped once.
let testMetrics: TestMetrics = {
    let metrics = TestMetrics()
    MetricsSystem.bootstrap(metrics)
    return metrics
}()

@Suite(
    "Metrics against a real broker",
    .enabled(if: TestBroker.reachableOrRequired, "needs a broker; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"), .watchdog)
struct MetricsTests {
    @Test func everyMessageOutcomeIsCounted() async throws {
        let metrics = testMetrics
        let configuration = try TestBroker.configuration()
        let name = try #require(configuration.connectionName)
        func total(_ label: String) throws -> Int64 {
            try metrics.expectCounter("rabbitmq_client_\(label)", [("connection", name)]).totalValue
        }
        let connection = try await AMQPConnection.open(configuration)
        let channel = try await connection.openChannel()
        try await channel.confirmSelect()
        let queue = try await channel.queueDeclare("", exclusive: true).name
        for index in 0..<10 { try await channel.publish("\(index)", routingKey: queue) }
        await #expect(throws: AMQPError.self) {
            try await channel.publish("nowhere", routingKey: TestBroker.uniqueName("unbound"), mandatory: true)
        }

        // 5 acknowledged, 3 rejected for good, 2 requeued (and acknowledged when they return).
        var handled = 0
        for try await delivery in try await channel.consume(queue: queue) {
            handled += 1
            switch handled {
            case 1...5, 11...12: try await delivery.ack()
            case 6...8: try await delivery.nack(requeue: false)
            default: try await delivery.reject(requeue: true)
            }
            if handled == 12 { break }
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while try total("acked_total") < 7, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }

        #expect(try total("published_total") == 11)
        #expect(try total("confirmed_total") == 11)  // the returned message is confirmed too
        #expect(try total("returned_total") == 1)
        #expect(try total("nacked_total") == 0)
        #expect(try total("delivered_total") == 12)
        #expect(try total("acked_total") == 7)
        #expect(try total("rejected_total") == 3)
        #expect(try total("requeued_total") == 2)
        await connection.close()
    }

    @Test func oversizedBodiesAreRefusedBeforeSending() async throws {
        var configuration = try TestBroker.configuration()
        configuration.maximumMessageSize = 1000
        let connection = try await AMQPConnection.open(configuration)
        let channel = try await connection.openChannel()
        let queue = try await channel.queueDeclare("", exclusive: true).name
        let error = await #expect(throws: AMQPError.self) {
            try await channel.publish([UInt8](repeating: 0, count: 1001), routingKey: queue)
        }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.contains("1001 bytes") == true)
        try await channel.publish([UInt8](repeating: 0, count: 1000), routingKey: queue)
        #expect(try await TestBroker.waitForMessageCount(1, in: queue, on: channel))
        await connection.close()
    }
}

@Suite(
    "Credentials against a real broker",
    .enabled(if: TestBroker.reachableOrRequired, "needs a broker; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"), .watchdog)
struct CredentialTests {
    @Test func aFailingLoginLogsAndThrowsNoPassword() async throws {
        let logs = CapturedLogs.Storage()
        var configuration = try TestBroker.configuration()
        configuration.password = "never-Logged-7f3a"
        let error = await #expect(throws: AMQPError.self) {
            try await AMQPConnection.open(configuration, logger: CapturedLogs.logger(logs))
        }
        #expect(error?.code == .accessRefused)
        #expect(!logs.all.isEmpty, "the failing connection logged at trace/debug level")
        let everything = logs.all.map { "\($0.message) \($0.metadata)" }.joined(separator: "\n")
            + "\(String(describing: error))" + (error.map { String(reflecting: $0) } ?? "")
        #expect(!everything.contains("never-Logged-7f3a"))
    }
}
