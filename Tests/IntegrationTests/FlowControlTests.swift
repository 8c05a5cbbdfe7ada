import Foundation
import RabbitMQ
import Testing

/// `connection.blocked` / `unblocked` during a memory alarm, on a broker of the test's own.
@Suite(
    "Blocked connections against a real broker",
    .enabled(if: TestBroker.reachableOrRequired, "needs a broker; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"), .watchdog)
struct FlowControlTests {
    /// Events the connection reported, in order.
    final class Events: @unchecked Sendable {
        // @unchecked: `list` is only touched while holding `lock`.
        private let lock = NSLock()
        private var list: [String] = []
        func append(_ event: String) { lock.withLock { list.append(event) } }
        var all: [String] { lock.withLock { list } }
    }

    private func waitFor(_ condition: () -> Bool, within limit: Duration) async throws -> Bool {
        let deadline = ContinuousClock.now + limit
        while !condition(), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        return condition()
    }

    @Test func memoryAlarmBlocksThenUnblocksAndWaitingPublishesGoThrough() async throws {
        try await ThrowawayBroker.with("alarm") { broker in
            let events = Events()
            var configuration = try AMQPConnection.Configuration(url: broker.url)
            configuration.onBlocked = { events.append("blocked: \($0)") }
            configuration.onUnblocked = { events.append("unblocked") }
            configuration.blockedPublishTimeout = .seconds(120)
            let connection = try await AMQPConnection.open(configuration)
            let channel = try await connection.openChannel()
            let queue = try await channel.queueDeclare("", exclusive: true).name
            try await channel.confirmSelect()
            try await channel.publish("before", routingKey: queue)

            try await broker.ctl(["set_vm_memory_high_watermark", "0.0000001"])
            // The broker announces the block when the connection next publishes.
            let first = Task { try await channel.publish("during-1", routingKey: queue) }
            #expect(try await waitFor({ connection.blockedReason != nil }, within: .seconds(30)))
            #expect(connection.blockedReason?.contains("memory") == true)
            let second = Task { try await channel.publish("during-2", routingKey: queue) }
            try await Task.sleep(for: .seconds(1))

            try await broker.ctl(["set_vm_memory_high_watermark", "0.4"])
            try await first.value
            try await second.value
            #expect(connection.blockedReason == nil)
            #expect(events.all.count == 2)
            #expect(events.all.first?.hasPrefix("blocked: ") == true)
            #expect(events.all.last == "unblocked")
            #expect(try await channel.queueDeclare(queue, passive: true).messageCount == 3)
            await connection.close()
        }
    }

    @Test func publishBlockedTooLongFailsWithBlockedTimeout() async throws {
        try await ThrowawayBroker.with("blocked") { broker in
            var configuration = try AMQPConnection.Configuration(url: broker.url)
            configuration.blockedPublishTimeout = .seconds(2)
            let connection = try await AMQPConnection.open(configuration)
            let channel = try await connection.openChannel()
            let queue = try await channel.queueDeclare("", exclusive: true).name

            try await broker.ctl(["set_vm_memory_high_watermark", "0.0000001"])
            try await channel.publish("trigger", routingKey: queue)  // no confirms: returns once written
            #expect(try await waitFor({ connection.blockedReason != nil }, within: .seconds(30)))
            let error = await #expect(throws: AMQPError.self) { try await channel.publish("late", routingKey: queue) }
            #expect(error?.code == .blockedTimeout)
            #expect(error?.message.contains("memory") == true)
            #expect(connection.isOpen)

            try await broker.ctl(["set_vm_memory_high_watermark", "0.4"])
            #expect(try await waitFor({ connection.blockedReason == nil }, within: .seconds(30)))
            try await channel.publish("after", routingKey: queue)
            #expect(try await TestBroker.waitForMessageCount(2, in: queue, on: channel))
            await connection.close()
        }
    }
}
