@testable import RabbitMQ
import Testing

@Suite(
    "Sleeping on the connection's thread (AMQPConnection.sleep)",
    .enabled(if: TestBroker.reachableOrRequired, "needs a broker; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"), .watchdog)
struct ConnectionSleepTests {
    /// A paced loop on the connection's thread: every sleep ends at or after its deadline, on
    /// that thread, and the publishes between them all arrive.
    @Test func aPacedPublisherOnTheConnectionThreadSleepsUntilEachDeadline() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let queue = try await channel.queueDeclare("", exclusive: true).name
        let count = 50
        let early = try await withTaskExecutorPreference(connection.taskExecutor) {
            var early = 0
            var due = ContinuousClock.now
            for index in 0..<count {
                due += .milliseconds(2)
                try await connection.sleep(until: due)
                if ContinuousClock.now < due { early += 1 }
                #expect(connection.core.executor.isOwnerThread)
                try await channel.publish(Array("\(index)".utf8), routingKey: queue)
            }
            return early
        }
        #expect(early == 0, "no sleep ends before its deadline")
        // The broker counts a message a moment after it arrives: wait for it, generously.
        var queued: UInt32 = 0
        for _ in 0..<300 {
            queued = try await channel.queueDeclare(queue, passive: true).messageCount
            if queued == UInt32(count) { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(queued == UInt32(count), "every paced message is in the queue")
        await connection.close()
    }

    /// A sleeper from another thread must wake an idle loop, which waits 30 s at a time
    /// without heartbeats or timed work.
    @Test func aSleeperFromAnotherThreadWakesAnIdleLoop() async throws {
        let connection = try await TestBroker.connect(heartbeat: 0)
        // Past the loop's last one-second tick after the handshake: it now waits 30 s.
        try await Task.sleep(for: .seconds(2))
        let start = ContinuousClock.now
        try await connection.sleep(until: start + .milliseconds(200))
        #expect(ContinuousClock.now >= start + .milliseconds(200))
        // Far below the idle loop's 30 s wait: the sleeper woke it.
        #expect(start.duration(to: .now) < .seconds(20))
        await connection.close()
    }

    /// Sleepers on the connection's thread wake in deadline order, not in the order they slept.
    @Test func sleepersWakeInDeadlineOrder() async throws {
        let connection = try await TestBroker.connect()
        let woke = Locked<[Int]>([])
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in [3, 1, 2] {
                // On the connection's one thread, each runs as soon as the loop resumes it.
                group.addTask(executorPreference: connection.taskExecutor) {
                    try await connection.sleep(until: start + .milliseconds(50 * index))
                    #expect(ContinuousClock.now >= start + .milliseconds(50 * index))
                    woke.withLock { $0.append(index) }
                }
            }
            try await group.waitForAll()
        }
        #expect(woke.withLock { $0 } == [1, 2, 3])
        await connection.close()
    }

    @Test func cancellingASleepEndsItAtOnce() async throws {
        let connection = try await TestBroker.connect()
        let sleeper = Task(executorPreference: connection.taskExecutor) {
            try await connection.sleep(for: .seconds(3600))
        }
        try await Task.sleep(for: .milliseconds(50))
        sleeper.cancel()
        await #expect(throws: CancellationError.self) { try await sleeper.value }
        // A task cancelled before it sleeps does not sleep at all.
        let cancelled = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await connection.sleep(for: .seconds(3600))
        }
        await #expect(throws: CancellationError.self) { try await cancelled.value }
        await connection.close()
    }

    /// The sample in `sleep(until:)`'s documentation and the concurrency article, as written.
    @Test func theDocumentedPacedPublisherRuns() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let readings = (0..<5).map { Array("reading \($0)".utf8) }
        let start = ContinuousClock.now
        try await withTaskExecutorPreference(connection.taskExecutor) {
            var due = ContinuousClock.now
            for reading in readings {
                try await connection.sleep(until: due)
                try await channel.publish(reading, routingKey: "sensor.readings")
                due += .milliseconds(10)
            }
        }
        #expect(start.duration(to: .now) >= .milliseconds(40), "four 10 ms steps after the first")
        await connection.close()
    }

    @Test func aClosedConnectionStillSleeps() async throws {
        let connection = try await TestBroker.connect()
        await connection.close()
        let deadline = ContinuousClock.now + .milliseconds(20)
        try await connection.sleep(until: deadline)
        #expect(ContinuousClock.now >= deadline)
    }
}
