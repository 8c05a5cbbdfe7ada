import Foundation
import RabbitMQ
import Testing

/// Every wait a caller can be suspended in ends soon after its task is cancelled, even while
/// the broker cannot answer (the proxy holds every byte, or the connection is recovering), and
/// the books stay consistent afterwards.
@Suite(
    "Cancellation against a real broker",
    .enabled(if: TestBroker.reachableOrRequired, "needs a broker; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"), .watchdog)
struct CancellationTests {
    /// How a cancelled call ended: it must end while the broker still cannot answer.
    final class Outcome: @unchecked Sendable {
        // @unchecked: `ended` is read and written only while holding `lock`.
        private let lock = NSLock()
        private var ended: Result<Void, any Error>?

        func finish(_ result: Result<Void, any Error>) { lock.withLock { ended = result } }

        /// Waits (bounded: a liveness limit, far above the milliseconds it takes) for the end.
        func wait(within limit: Duration = .seconds(20)) async throws -> Result<Void, any Error>? {
            let deadline = ContinuousClock.now + limit
            while ContinuousClock.now < deadline {
                if let ended = lock.withLock({ ended }) { return ended }
                try await Task.sleep(for: .milliseconds(10))
            }
            return lock.withLock { ended }
        }
    }

    /// Starts `body` in a task, lets it reach its wait, cancels it, and reports how it ended.
    private func cancelled(_ body: @escaping @Sendable () async throws -> Void) async throws -> Result<Void, any Error>? {
        let outcome = Outcome()
        let task = Task {
            do {
                try await body()
                outcome.finish(.success(()))
            } catch {
                outcome.finish(.failure(error))
            }
        }
        try await Task.sleep(for: .milliseconds(300))  // lets it reach its wait; asserts nothing
        task.cancel()
        return try await outcome.wait()
    }

    private func isCancellation(_ result: Result<Void, any Error>?) -> Bool {
        if case .failure(let error) = result, error is CancellationError { true } else { false }
    }

    @Test func waitsForConfirmsRoomAndRepliesEndWhenCancelled() async throws {
        let (configuration, proxy) = try TestBroker.configurationThroughProxy()
        defer { proxy.stop() }
        let connection = try await AMQPConnection.open(configuration)
        let channel = try await connection.openChannel()
        let queue = try await channel.queueDeclare("", exclusive: true).name
        try await channel.confirmSelect(window: 10)
        let getting = try await connection.openChannel()
        try await channel.publish("for the get", routingKey: queue)
        let consuming = try await connection.openChannel()
        let other = try await consuming.queueDeclare("", exclusive: true).name
        for index in 0..<5 { try await channel.publish("c\(index)", routingKey: other) }

        proxy.stall()
        // A confirm-mode publish waiting for its confirm (handed over here, so it is certainly sent).
        let pending = try await channel.publishWithoutWaiting(Array("waits for its confirm".utf8), routingKey: queue)
        let confirm = try await cancelled { try await pending.wait() }
        #expect(isCancellation(confirm), "\(String(describing: confirm))")
        // A publish waiting for room in a full window (the confirm above holds one place).
        var inFlight: [PublishConfirmation] = []
        for index in 0..<9 { inFlight.append(try await channel.publishWithoutWaiting(Array("w\(index)".utf8), routingKey: queue)) }
        let room = try await cancelled { _ = try await channel.publishWithoutWaiting(Array("no room".utf8), routingKey: queue) }
        #expect(isCancellation(room), "\(String(describing: room))")
        // A synchronous method waiting for its reply, and one queued behind it, never sent.
        let reply = try await cancelled { _ = try await channel.queueDeclare(queue, passive: true) }
        #expect(isCancellation(reply), "\(String(describing: reply))")
        // A basic.get waiting for its message.
        let get = try await cancelled { _ = try await getting.basicGet(queue: queue) }
        #expect(isCancellation(get), "\(String(describing: get))")
        // A basic.consume waiting for consume-ok.
        let consume = try await cancelled { _ = try await consuming.consume(queue: other) }
        #expect(isCancellation(consume), "\(String(describing: consume))")

        proxy.forward()
        // The books are consistent: the in-flight publishes settle, the channels work, the
        // cancelled get's message went back to the queue, and the window has its room back.
        for confirmation in inFlight + [pending] { try await confirmation.wait() }
        // The publish before, the cancelled one and the 9 in flight; the get's message given back
        // (on another channel: the broker may count before it has the nack).
        #expect(try await TestBroker.waitForMessageCount(11, in: queue, on: channel))
        try await channel.publish("after", routingKey: queue)
        #expect(try await getting.basicGet(queue: queue, autoAck: true) != nil)
        // The consume that went out is cancelled after its reply, and what it got is given back.
        let deadline = ContinuousClock.now + .seconds(30)
        var state = try await consuming.queueDeclare(other, passive: true)
        while state.consumerCount != 0 || state.messageCount != 5, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
            state = try await consuming.queueDeclare(other, passive: true)
        }
        #expect(state.consumerCount == 0 && state.messageCount == 5, "\(state)")
        await connection.close()
    }

    @Test func waitingForARecoveryEndsWhenCancelled() async throws {
        let (configuration, proxy) = try TestBroker.configurationThroughProxy()
        defer { proxy.stop() }
        let connection = try await AMQPConnection.open(configuration)
        let events = EventLog(connection)
        let channel = try await connection.openChannel()
        let queue = try await channel.queueDeclare("", exclusive: true).name
        try await channel.confirmSelect()
        proxy.cut()  // and every reconnect, until forward()
        #expect(try await events.waitFor(within: .seconds(20), EventLog.isDisconnected))

        let rpc = try await cancelled { _ = try await channel.queueDeclare("", exclusive: true) }
        #expect(isCancellation(rpc), "\(String(describing: rpc))")
        let open = try await cancelled { _ = try await connection.openChannel() }
        #expect(isCancellation(open), "\(String(describing: open))")
        let publish = try await cancelled { try await channel.publish("held while recovering", routingKey: queue) }
        #expect(isCancellation(publish), "\(String(describing: publish))")

        proxy.forward()
        #expect(try await events.waitFor(within: .seconds(60), EventLog.isRecovered))
        try await channel.publish("after", routingKey: "amq.rabbitmq.no-such-queue-\(UUID())")
        await connection.close()
    }
}
