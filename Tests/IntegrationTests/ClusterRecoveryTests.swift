import Foundation
import RabbitMQ
import Testing

/// A three-node cluster on loopback: the client follows its endpoints when its node goes.
@Suite(
    "Cluster failover against real brokers",
    .enabled(if: TestBroker.reachableOrRequired, "needs a broker; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"), .watchdog)
struct ClusterRecoveryTests {
    @Test func clientMovesToAnotherNodeWhenItsNodeIsKilled() async throws {
        let cookie = "SWIFTRMQ" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16)
        async let startA = ThrowawayBroker.start("clustera", cookie: cookie)
        async let startB = ThrowawayBroker.start("clusterb", cookie: cookie)
        async let startC = ThrowawayBroker.start("clusterc", cookie: cookie)
        let nodes = try await [startA, startB, startC]
        do {
            try await run(on: nodes)
        } catch {
            for node in nodes { await node.stop() }
            throw error
        }
        for node in nodes { await node.stop() }
    }

    private func run(on nodes: [ThrowawayBroker]) async throws {
        let (a, b, c) = (nodes[0], nodes[1], nodes[2])
        for node in [b, c] {
            try await node.ctl(["stop_app"])
            try await node.ctl(["join_cluster", a.node])
            try await node.ctl(["start_app"])
        }

        func configuration(_ name: String) throws -> AMQPConnection.Configuration {
            var configuration = try TestBroker.configuration(url: a.url, name)
            configuration.alternateEndpoints = [b, c].map { .init(host: "127.0.0.1", port: $0.port) }
            return configuration
        }
        let ledger = MessageLedger()
        let queue = TestBroker.uniqueName("cluster")
        let publisher = try await AMQPConnection.open(configuration("publisher"))
        let consumer = try await AMQPConnection.open(configuration("consumer"))
        let publisherEvents = EventLog(publisher)
        let consumerEvents = EventLog(consumer)
        _ = try await publisher.withChannel {
            try await $0.queueDeclare(
                queue, durable: true, arguments: ["x-queue-type": "quorum", "x-quorum-initial-group-size": 3])
        }
        let consuming = FaultLoad.consume(queue, on: consumer, ledger: ledger)

        let total = 20_000
        let failover = Task {
            try await ledger.waitUntilHandedOver(6_000)
            try await a.kill()
        }
        // Paced (about 2,000 a second) so the quorum queue's leader election after the kill,
        // during which the broker nacks publishes, does not swallow the whole run.
        try await FaultLoad.publish(total, to: queue, on: publisher, ledger: ledger, pause: .milliseconds(50))
        try await failover.value
        // Publishes the broker nacked while the quorum queue elected a new leader, or that were
        // in flight when the node died, are published again, as an application would.
        let failed = ledger.failedIDs
        let firstPass = "confirmed \(ledger.confirmedCount) at the first attempt"
        let retried = try await FaultLoad.retry(failed, to: queue, on: publisher, ledger: ledger, within: .seconds(120))
        try await ledger.waitUntilConfirmedConsumed(within: .seconds(90))
        consuming.cancel()

        let movedTo = publisherEvents.all.compactMap { event -> Int? in
            if case .recovered(let endpoint, _) = event { return endpoint.port }
            return nil
        }
        print(
            "FIGURES " + ledger.summary("cluster node killed", sent: total) + "; \(firstPass); \(retried) of \(failed.count) failed publishes confirmed on retry; publisher moved to port \(movedTo)")
        #expect(retried == failed.count, "every failed publish gets through on the surviving nodes")
        #expect(ledger.consumedCount == total, "consumption continued after the failover")
        #expect(ledger.lost.isEmpty, "confirmed but never consumed: \(ledger.lost.prefix(20))")
        #expect(ledger.unflaggedDuplicates.isEmpty)
        #expect(ledger.confirmedCount == total)
        #expect(movedTo.count == 1 && movedTo.allSatisfy { $0 != a.port })
        #expect(consumerEvents.count(EventLog.isRecovered) == 1)
        await publisher.close()
        await consumer.close()
    }
}
