@testable import RabbitMQ
import Testing

@Suite(
    "Tasks on the connection's own thread (AMQPConnection.taskExecutor)",
    .enabled(if: TestBroker.reachableOrRequired, "needs a broker; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"), .watchdog)
struct TaskExecutorTests {
    /// Whether the calling code runs on `connection`'s owner thread.
    private func onConnectionThread(_ connection: AMQPConnection) -> Bool {
        connection.core.executor.isOwnerThread
    }

    @Test func publishConsumeAcknowledgeAndCallMethodsFromTheConnectionThread() async throws {
        let connection = try await TestBroker.connect()
        let count = 5_000
        let outcome = try await withTaskExecutorPreference(connection.taskExecutor) {
            #expect(onConnectionThread(connection))
            let channel = try await connection.openChannel()
            try await channel.basicQos(prefetchCount: 100)
            let queue = try await channel.queueDeclare("", exclusive: true).name
            #expect(onConnectionThread(connection), "back on the connection's thread after a method call")

            Watchdog.note("confirm.select")
            try await channel.confirmSelect(window: 200)
            var last: PublishConfirmation?
            for index in 0..<count {
                last = try await channel.publishWithoutWaiting(Array("\(index)".utf8), routingKey: queue)
            }
            Watchdog.note("waiting for the last confirm")
            try await last?.wait()
            Watchdog.note("counting the queue")
            #expect(try await channel.queueDeclare(queue, passive: true).messageCount == UInt32(count))

            // Timers resume the task on the connection's thread too.
            Watchdog.note("sleeping")
            try await Task.sleep(for: .milliseconds(20))
            #expect(onConnectionThread(connection))
            Watchdog.note("consuming")

            var bodies: [String] = []
            for try await delivery in try await channel.consume(queue: queue) {
                #expect(onConnectionThread(connection))
                bodies.append(delivery.bodyString)
                try await delivery.ack()
                if bodies.count == count { break }
                if bodies.count % 500 == 0 { Watchdog.note("consumed \(bodies.count)") }
            }
            Watchdog.note("counting what is left")
            let remaining = try await channel.queueDeclare(queue, passive: true).messageCount
            Watchdog.note("closing from the connection's thread")
            await connection.close()
            Watchdog.note("closed")
            return (bodies, remaining)
        }
        #expect(outcome.0 == (0..<count).map { "\($0)" }, "every message, in order")
        #expect(outcome.1 == 0, "every message acknowledged")
        #expect(connection.closeReason?.code == .connectionClosed)
    }

    /// A close from the connection's own thread used to wait for ever now and then (about one
    /// run in a hundred under load, three CI runs so far): its wait for `close-ok` was registered
    /// after a hop through the task's executor, and the loop's turn in between had already read
    /// `close-ok` and shut the connection down. Many closes, four at a time, each right after a
    /// round trip, as the hanging test did; the watchdog reports a hang.
    @Test func closingFromTheConnectionThreadAlwaysReturns() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<4 {
                group.addTask {
                    for round in 0..<60 {
                        Watchdog.note("worker \(worker), close \(round)")
                        let connection = try await TestBroker.connect("closingFromTheConnectionThreadAlwaysReturns")
                        try await withTaskExecutorPreference(connection.taskExecutor) {
                            let channel = try await connection.openChannel()
                            _ = try await channel.queueDeclare("", exclusive: true)
                            await connection.close()
                        }
                        #expect(!connection.isOpen)
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    @Test func aTaskKeepsRunningAfterItsConnectionIsGone() async throws {
        var connection: AMQPConnection? = try await TestBroker.connect()
        let executor = try #require(connection?.taskExecutor)
        let task = Task(executorPreference: executor) {
            try await Task.sleep(for: .milliseconds(200))
            return 42
        }
        // The connection's thread exits; the task's next job runs on a short-lived drainer.
        await connection?.close()
        connection = nil
        #expect(try await task.value == 42)
    }
}
