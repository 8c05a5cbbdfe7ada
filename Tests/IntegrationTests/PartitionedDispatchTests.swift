import Foundation
import OrderEvents
import RabbitMQ
import RabbitMQEvents
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing

/// Events handled by replicas: per key the sequence numbers in handling order, and who handled
/// what.
actor ReplicaRecorder {
    private(set) var handled: [String: [Int]] = [:]
    private(set) var byReplica: [String: Int] = [:]
    private(set) var latestByReplica: [String: ContinuousClock.Instant] = [:]
    private var running: [String: Int] = [:]
    private(set) var overlaps = 0

    func started(_ key: String) {
        running[key, default: 0] += 1
        if running[key]! > 1 { overlaps += 1 }
    }

    func finished(_ key: String, _ sequence: Int, by replica: String) {
        running[key, default: 0] -= 1
        handled[key, default: []].append(sequence)
        byReplica[replica, default: 0] += 1
        latestByReplica[replica] = .now
    }

    var count: Int { handled.values.reduce(0) { $0 + $1.count } }
}

/// A dispatcher running in a task of its own, stopped gracefully (or cancelled) on demand.
struct RunningReplica {
    let name: String
    let task: Task<Void, any Error>
    let trigger: GracefulShutdownTestTrigger

    static func start(
        _ name: String, _ configuration: EventDispatcher.Configuration, recorder: ReplicaRecorder
    ) async throws -> RunningReplica {
        var configuration = configuration
        let (ready, readyContinuation) = AsyncStream.makeStream(of: Void.self)
        configuration.onReady = { readyContinuation.yield() }
        var handlers = EventHandlers()
        handlers.on(OrderCreated.self) { order, _ in
            await recorder.started(order.orderID)
            try await Task.sleep(for: .milliseconds(Int.random(in: 10...30)))
            await recorder.finished(order.orderID, Int(order.customerID)!, by: name)
        }
        let dispatcher = EventDispatcher(
            connection: try TestBroker.configuration(), configuration: configuration, handlers: handlers)
        let (triggers, triggerContinuation) = AsyncStream.makeStream(of: GracefulShutdownTestTrigger.self)
        let task = Task {
            // A dispatcher that fails before it is ready ends the wait below.
            defer { readyContinuation.finish() }
            try await testGracefulShutdown { trigger in
                triggerContinuation.yield(trigger)
                try await dispatcher.run()
            }
        }
        var triggerIterator = triggers.makeAsyncIterator()
        let trigger = await triggerIterator.next()!
        var readyIterator = ready.makeAsyncIterator()
        if await readyIterator.next() == nil {
            try await task.value  // throws why it ended
            throw ReplicaEnded(name: name)
        }
        return RunningReplica(name: name, task: task, trigger: trigger)
    }

    struct ReplicaEnded: Error, CustomStringConvertible {
        let name: String
        var description: String { "replica \(name) returned before it was ready" }
    }

    /// Graceful shutdown, then waits for the dispatcher to return.
    func stop() async throws {
        trigger.triggerGracefulShutdown()
        try await task.value
    }
}

extension EventDispatcherTests {
    private func partitioned(_ name: String = #function) -> EventDispatcher.Configuration {
        var configuration = configuration(name)
        configuration.partitions = 4
        configuration.prefetch = 16
        configuration.replicaHeartbeat = .milliseconds(300)
        return configuration
    }

    private func cleanUpPartitions(_ configuration: EventDispatcher.Configuration) async throws {
        try await TestBroker.connect().withChannel { channel in
            for index in 0..<configuration.partitions { try await channel.queueDelete(configuration.partitionQueue(index)) }
            try await channel.exchangeDelete(configuration.partitionExchange)
            try await channel.exchangeDelete(configuration.replicaExchange)
        }
        try await cleanUp(configuration)
    }

    private func partitionCounts(_ configuration: EventDispatcher.Configuration) async throws -> [UInt32] {
        try await TestBroker.connect().withChannel { channel in
            var counts: [UInt32] = []
            for index in 0..<configuration.partitions {
                counts.append(try await channel.queueDeclare(configuration.partitionQueue(index), passive: true).messageCount)
            }
            return counts
        }
    }

    /// Publishes `rounds` events for each of `keys`, interleaved, numbered from `from`.
    private func publish(
        _ keys: [String], rounds: Range<Int>, with publisher: EventPublisher
    ) async throws {
        var confirmations: [PublishConfirmation] = []
        for sequence in rounds {
            for key in keys {
                confirmations.append(
                    try await publisher.publishWithoutWaiting(OrderCreated(orderID: key, customerID: "\(sequence)", items: [])))
            }
        }
        for confirmation in confirmations { try await confirmation.wait() }
    }

    /// Three replicas join one after another while events flow faster than one replica handles
    /// them (so partitions move with deliveries held and more waiting), then one leaves: every
    /// key's events are still handled one at a time, in publish order, each exactly once, and
    /// every replica gets a share.
    @Test func replicasSharePartitionsAndKeepEveryKeysOrderWhilePartitionsMove() async throws {
        let configuration = partitioned()
        let recorder = ReplicaRecorder()
        let keys = (0..<24).map { "order-\($0)" }
        let rounds = 200
        let connection = try await TestBroker.connect()
        let publisher = try await EventPublisher(connection: connection, exchange: configuration.exchange)
        let first = try await RunningReplica.start("first", configuration, recorder: recorder)
        // A round of 24 events every 10 ms: 100 events per key and second, more than a replica
        // handles (5-15 ms each, one at a time per key).
        let publishing = Task {
            for round in 0..<rounds {
                try await publish(keys, rounds: round..<(round + 1), with: publisher)
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        try await Task.sleep(for: .milliseconds(300))
        let second = try await RunningReplica.start("second", configuration, recorder: recorder)
        try await Task.sleep(for: .milliseconds(500))
        let third = try await RunningReplica.start("third", configuration, recorder: recorder)
        try await Task.sleep(for: .milliseconds(700))
        try await second.stop()
        try await publishing.value
        #expect(try await waitUntil({ await recorder.count >= rounds * keys.count }, within: .seconds(120)))
        let secondHandled = await recorder.byReplica["second"] ?? 0

        // Settled: the two left share the partitions, so each handles some of the next events.
        try await Task.sleep(for: .seconds(1))
        let settled = ContinuousClock.now
        try await publish(keys, rounds: rounds..<(rounds + 10), with: publisher)
        #expect(try await waitUntil({ await recorder.count >= (rounds + 10) * keys.count }, within: .seconds(120)))
        for replica in ["first", "third"] {
            let latest = await recorder.latestByReplica[replica]
            #expect(latest.map { $0 > settled } == true, "\(replica) handled nothing after the partitions settled")
        }
        try await first.stop()
        try await third.stop()
        let handled = await recorder.handled
        for key in keys {
            #expect(handled[key] == Array(0..<(rounds + 10)), "\(key): \(handled[key] ?? [])")
        }
        #expect(secondHandled > 0, "the second replica never got a partition")
        #expect(await recorder.overlaps == 0, "two events of one key ran at once")
        #expect(try await partitionCounts(configuration).allSatisfy { $0 == 0 })
        print("partitions: handled by replica \(await recorder.byReplica)")
        await connection.close()
        try await cleanUpPartitions(configuration)
    }

    /// A replica that disappears without a word (its task cancelled: no leaving announcement)
    /// is taken for gone after the heartbeat timeout, and its partitions move to the other one.
    @Test func aSilentReplicasPartitionsMoveToTheOthers() async throws {
        let configuration = partitioned()
        let recorder = ReplicaRecorder()
        let keys = (0..<16).map { "order-\($0)" }
        let connection = try await TestBroker.connect()
        let publisher = try await EventPublisher(connection: connection, exchange: configuration.exchange)
        let first = try await RunningReplica.start("first", configuration, recorder: recorder)
        let second = try await RunningReplica.start("second", configuration, recorder: recorder)
        try await Task.sleep(for: .seconds(2))
        second.task.cancel()
        _ = try? await second.task.value
        try await publish(keys, rounds: 0..<20, with: publisher)
        #expect(try await waitUntil({ await recorder.count >= 320 }, within: .seconds(120)))
        #expect(await recorder.byReplica["first"] == 320)
        try await first.stop()
        let handled = await recorder.handled
        for key in keys { #expect(handled[key] == Array(0..<20), "\(key): \(handled[key] ?? [])") }
        await connection.close()
        try await cleanUpPartitions(configuration)
    }
}
