import Foundation
import OrderEvents
import RabbitMQ
import RabbitMQEvents
import Testing

/// What ran, per partition key, and how many ran at once.
actor LaneRecorder {
    private(set) var handled: [String: [Int]] = [:]
    private(set) var order: [String] = []
    private var running: [String: Int] = [:]
    private(set) var mostRunningOfOneKey = 0
    private(set) var mostRunning = 0

    func started(_ key: String) {
        running[key, default: 0] += 1
        mostRunningOfOneKey = max(mostRunningOfOneKey, running[key]!)
        mostRunning = max(mostRunning, running.values.reduce(0, +))
    }

    func finished(_ key: String, _ sequence: Int) {
        running[key, default: 0] -= 1
        handled[key, default: []].append(sequence)
        order.append("\(key)-\(sequence)")
    }

    var count: Int { handled.values.reduce(0) { $0 + $1.count } }
}

extension EventDispatcherTests {
    /// An order event whose customer id carries its place in the key's sequence.
    private func event(_ key: String, _ sequence: Int) -> OrderCreated {
        OrderCreated(orderID: key, customerID: "\(sequence)", items: [])
    }

    /// 10 keys, 30 events each, published interleaved; handlers take a random few milliseconds.
    /// Every key's events are handled one at a time in publish order, while different keys run
    /// concurrently. (Before ordered lanes, up to `prefetch` handlers ran regardless of key.)
    @Test func eventsOfOneKeyAreHandledInPublishOrderOthersConcurrently() async throws {
        var configuration = configuration()
        configuration.prefetch = 64
        let recorder = LaneRecorder()
        var handlers = EventHandlers()
        handlers.on(OrderCreated.self) { order, _ in
            await recorder.started(order.orderID)
            try await Task.sleep(for: .milliseconds(Int.random(in: 0...8)))
            await recorder.finished(order.orderID, Int(order.customerID)!)
        }
        let keys = (0..<10).map { "order-\($0)" }
        try await withDispatcher(configuration, handlers) { connection in
            let publisher = try await EventPublisher(connection: connection, exchange: configuration.exchange)
            var confirmations: [PublishConfirmation] = []
            for sequence in 0..<30 {
                for key in keys { confirmations.append(try await publisher.publishWithoutWaiting(event(key, sequence))) }
            }
            for confirmation in confirmations { try await confirmation.wait() }
            #expect(try await waitUntil({ await recorder.count == 300 }, within: .seconds(60)))
        }
        let handled = await recorder.handled
        for key in keys {
            #expect(handled[key] == Array(0..<30), "\(key) handled as \(handled[key] ?? [])")
        }
        #expect(await recorder.mostRunningOfOneKey == 1)
        #expect(await recorder.mostRunning > 1, "different keys should run concurrently")
        let finalCounts = try await counts(configuration)
        #expect(finalCounts == (0, 0), "\(finalCounts)")
        try await cleanUp(configuration)
    }

    /// Key A's first event fails until all of key B's events were handled (each failure is
    /// retried in place after 50 ms): A's later events wait behind it, B's go on meanwhile.
    @Test func aRetryingEventHoldsItsKeyWhileOtherKeysGoOn() async throws {
        var configuration = configuration()
        configuration.retry = RetryPolicy(maxAttempts: 2_000, initialDelay: .milliseconds(50), multiplier: 1, jitter: 0)
        let recorder = LaneRecorder()
        var handlers = EventHandlers()
        handlers.on(OrderCreated.self) { order, context in
            await recorder.started(order.orderID)
            let sequence = Int(order.customerID)!
            if order.orderID == "A", sequence == 0, await recorder.handled["B"]?.count != 3 {
                await recorder.finished(order.orderID, -1)  // a failed attempt
                throw Failure(description: "not yet")
            }
            await recorder.finished(order.orderID, sequence)
        }
        try await withDispatcher(configuration, handlers) { connection in
            let publisher = try await EventPublisher(connection: connection, exchange: configuration.exchange)
            for sequence in 0..<3 { try await publisher.publish(event("A", sequence)) }
            #expect(try await waitUntil { await recorder.handled["A"]?.first == -1 })
            for sequence in 0..<3 { try await publisher.publish(event("B", sequence)) }
            #expect(try await waitUntil({ await recorder.handled["A"]?.suffix(3) == [0, 1, 2] }, within: .seconds(60)))
        }
        let handledA = await recorder.handled["A"] ?? []
        #expect(handledA.suffix(3) == [0, 1, 2])
        #expect(handledA.dropLast(3).allSatisfy { $0 == -1 }, "A-1 and A-2 waited for A-0: \(handledA)")
        #expect(await recorder.handled["B"] == [0, 1, 2])
        #expect(await recorder.mostRunningOfOneKey == 1)
        #expect(try await counts(configuration) == (0, 0))
        try await cleanUp(configuration)
    }

    @Test func unknownTypesCanBeAcknowledgedInstead() async throws {
        var configuration = configuration()
        configuration.unknownTypes = .acknowledge
        let recorder = LaneRecorder()
        var handlers = EventHandlers()
        handlers.on(OrderCreated.self) { order, _ in await recorder.finished(order.orderID, 0) }
        try await withDispatcher(configuration, handlers) { connection in
            let publisher = try await EventPublisher(connection: connection, exchange: configuration.exchange)
            try await publisher.publish(OrderCancelled(orderID: "unknown", items: [], reason: "no handler here"))
            try await publisher.publish(event("known", 0))
            #expect(try await waitUntil { await recorder.count == 1 })
            #expect(try await waitUntil { (try? await counts(configuration)).map { $0 == (0, 0) } ?? false })
        }
        #expect(try await counts(configuration) == (0, 0), "acknowledged, not dead-lettered")
        try await cleanUp(configuration)
    }

    /// A handler that outlives the timeout is cancelled; the attempt counts as failed and the
    /// next one runs.
    @Test func aHandlerOverItsTimeoutIsCancelledAndRetried() async throws {
        var configuration = configuration()
        configuration.handlerTimeout = .milliseconds(300)
        configuration.retry = RetryPolicy(maxAttempts: 2, initialDelay: .milliseconds(10))
        let recorder = Recorder()
        let cancelled = LaneRecorder()
        var handlers = EventHandlers()
        handlers.on(OrderCreated.self) { _, context in
            await recorder.record("attempt", context)
            if context.attempt == 1 {
                do {
                    try await Task.sleep(for: .seconds(600))
                } catch {
                    await cancelled.finished("cancelled", 1)
                    throw error
                }
            }
        }
        try await withDispatcher(configuration, handlers) { connection in
            let publisher = try await EventPublisher(connection: connection, exchange: configuration.exchange)
            try await publisher.publish(event("slow", 0))
            #expect(try await waitUntil { await recorder.count == 2 })
        }
        #expect(await recorder.calls.map(\.context.attempt) == [1, 2])
        #expect(await cancelled.count == 1)
        #expect(try await counts(configuration) == (0, 0))
        try await cleanUp(configuration)
    }

    /// A graceful shutdown while key A's first event is being handled: it finishes and is
    /// acknowledged; A's other events, which waited behind it, were never started and go back to
    /// the queue in their order (the next consumer handles them as published).
    @Test func shutdownGivesBackTheEventsWaitingInALaneInOrder() async throws {
        var configuration = configuration()
        configuration.prefetch = 20
        configuration.shutdownDeadline = .seconds(60)
        let recorder = LaneRecorder()
        let shutdownAsked = LaneRecorder()
        var handlers = EventHandlers()
        handlers.on(OrderCreated.self) { order, _ in
            await recorder.started(order.orderID)
            // The first event finishes only once the shutdown was asked for.
            while await shutdownAsked.count == 0 { try await Task.sleep(for: .milliseconds(10)) }
            await recorder.finished(order.orderID, Int(order.customerID)!)
        }
        try await withDispatcher(
            configuration, handlers, afterShutdownTriggered: { await shutdownAsked.finished("shutdown", 0) }
        ) { connection in
            let publisher = try await EventPublisher(connection: connection, exchange: configuration.exchange)
            for sequence in 0..<5 { try await publisher.publish(event("A", sequence)) }
            #expect(try await waitUntil { await recorder.mostRunning == 1 })
            // All five delivered: A-0 running, A-1...A-4 waiting behind it.
            #expect(try await waitUntil { (try? await counts(configuration).main) == 0 })
        }
        #expect(await recorder.handled["A"] == [0])
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        var returned: [Int] = []
        while let delivery = try await channel.basicGet(queue: configuration.queue, autoAck: true) {
            returned.append(Int(try JSONEventCodec().decode(OrderCreated.self, from: delivery.body).customerID)!)
        }
        await connection.close()
        #expect(returned == [1, 2, 3, 4])
        try await cleanUp(configuration)
    }
}
