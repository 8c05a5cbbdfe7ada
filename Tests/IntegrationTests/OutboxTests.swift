import Foundation
import GRDB
import Logging
import OrderEvents
import RabbitMQ
import RabbitMQEvents
import RabbitMQEventsPostgres
import RabbitMQEventsSQLite
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing

/// The transactional outbox on SQLite and its relay, against a real broker.
@Suite(
    "Transactional outbox against a real broker",
    .enabled(if: TestBroker.reachableOrRequired, "needs a broker; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"), .watchdog)
struct OutboxTests {
    /// A store on a new file, with an `orders` table, and a queue bound to a new exchange.
    private func prepare(_ name: String = #function) async throws -> (SQLiteEventStore, String, exchange: String, queue: String) {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("swift-rabbitmq-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let path = folder.appendingPathComponent("service.sqlite").path
        let store = try SQLiteEventStore(path: path)
        try await store.database.write { try $0.execute(sql: "CREATE TABLE orders (id TEXT PRIMARY KEY)") }
        let queue = TestBroker.uniqueName(name)
        try await TestBroker.connect().withChannel { channel in
            try await channel.exchangeDeclare(queue + ".exchange", type: .topic)
            try await channel.queueDeclare(queue)
            try await channel.queueBind(queue, exchange: queue + ".exchange", routingKey: "order.*")
        }
        return (store, path, queue + ".exchange", queue)
    }

    /// Runs relays while `body` runs, then shuts them down gracefully.
    private func withRelays(
        _ stores: [any OutboxStore], configuration: OutboxRelay.Configuration = .init(), _ body: () async throws -> Void
    ) async throws {
        // The relay's warnings (a failed read, publish or delete) go to the test's output.
        var logger = Logger(label: "outbox-relay", factory: { StreamLogHandler.standardError(label: $0) })
        logger.logLevel = .warning
        let relays = try stores.map {
            OutboxRelay(connection: try TestBroker.configuration(), store: $0, configuration: configuration, logger: logger)
        }
        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for relay in relays { group.addTask { try await relay.run() } }
                try await body()
                trigger.triggerGracefulShutdown()
                try await group.waitForAll()
            }
        }
    }

    /// Receives `count` messages from `queue` (acknowledged), or fewer after `limit` (generous
    /// by default: in a full parallel run on two cores, 300 commits one after another and their
    /// publishing took up to 80 s, 1.4 s alone; short to check that nothing more comes).
    /// The outbox's depth once the relay deleted what it published (it deletes after the
    /// confirm, so a consumer may see an event before it is gone from the outbox), or after three
    /// minutes.
    private func depthOnceDeleted(_ store: some OutboxStore) async throws -> Int {
        let deadline = ContinuousClock.now + .seconds(180)
        var depth = try await store.outboxBacklog().count
        while depth > 0, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
            depth = try await store.outboxBacklog().count
        }
        return depth
    }

    private func receive(_ count: Int, from queue: String, within limit: Duration = .seconds(180)) async throws -> [AMQPDelivery] {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        var received: [AMQPDelivery] = []
        let deadline = ContinuousClock.now + limit
        while received.count < count, ContinuousClock.now < deadline {
            if let delivery = try await channel.basicGet(queue: queue, autoAck: true) {
                received.append(delivery)
            } else {
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        await connection.close()
        return received
    }

    private func order(_ index: Int, exchange: String) throws -> OutboxMessage {
        try OutboxMessage(
            OrderCreated(orderID: "order-\(index)", customerID: "c", items: []), exchange: exchange,
            messageID: "order-\(index)-created")
    }

    /// Events written in the transactions of their business rows are published in commit order,
    /// with their ids and partition keys, and deleted once confirmed; one whose transaction
    /// rolled back is never published.
    @Test func committedEventsArePublishedInCommitOrderAndRolledBackOnesNever() async throws {
        let (store, _, exchange, queue) = try await prepare()
        struct Refused: Error {}
        try await withRelays([store]) {
            try await Task.sleep(for: .milliseconds(200))  // the relay is waiting now
            for index in 0..<200 {
                try await store.database.write { db in
                    try db.execute(sql: "INSERT INTO orders VALUES (?)", arguments: ["order-\(index)"])
                    try store.enqueue(try order(index, exchange: exchange), in: db)
                }
                if index == 100 {
                    await #expect(throws: Refused.self) {
                        try await store.database.write { db in
                            try store.enqueue(try order(999, exchange: exchange), in: db)
                            throw Refused()
                        }
                    }
                }
            }
            // Generous: the full suite loads the broker and the machine.
            let received = try await receive(200, from: queue, within: .seconds(180))
            #expect(received.map(\.properties.messageID) == (0..<200).map { "order-\($0)-created" })
            #expect(received.allSatisfy { $0.properties.type == "OrderCreated" && $0.properties.deliveryMode == .persistent })
            #expect(received.first?.properties.headers?[EventHeader.partitionKey]?.stringValue == "order-0")
            #expect(try await depthOnceDeleted(store) == 0)
        }
        #expect(try await receive(1, from: queue, within: .milliseconds(500)).isEmpty, "the rolled-back event never went out")
        _ = try await TestBroker.connect().withChannel { try await $0.queueDelete(queue) }
    }

    /// An idle relay is woken by a commit: with a poll interval of ten minutes, longer than the
    /// test waits, only the wake-up can publish the event.
    @Test func aCommitWakesAnIdleRelay() async throws {
        let (store, _, exchange, queue) = try await prepare()
        var configuration = OutboxRelay.Configuration()
        configuration.pollInterval = .seconds(600)
        try await withRelays([store], configuration: configuration) {
            // Idle: its first look found nothing.
            #expect(try await receive(1, from: queue, within: .milliseconds(300)).isEmpty)
            try await store.database.write { db in try store.enqueue(try order(0, exchange: exchange), in: db) }
            let received = try await receive(1, from: queue, within: .seconds(180))
            #expect(received.map(\.properties.messageID) == ["order-0-created"])
        }
        _ = try await TestBroker.connect().withChannel { try await $0.queueDelete(queue) }
    }

    /// A relay whose deletes fail after publishing (as if it died between the confirm and the
    /// delete) publishes the same events again, with the same message ids, and the outbox ends
    /// empty: a consumer's inbox would skip the second copies.
    @Test func eventsPublishedButNotDeletedArePublishedAgainWithTheSameIDs() async throws {
        let (store, _, exchange, queue) = try await prepare()
        let flaky = FailingDeletes(store, failures: 1)
        var configuration = OutboxRelay.Configuration()
        configuration.pollInterval = .milliseconds(100)
        try await store.database.write { db in
            for index in 0..<50 { try store.enqueue(try order(index, exchange: exchange), in: db) }
        }
        try await withRelays([flaky], configuration: configuration) {
            let received = try await receive(100, from: queue)
            let ids = received.map { $0.properties.messageID ?? "" }
            let expected = (0..<50).map { "order-\($0)-created" }
            #expect(ids == expected + expected, "each event twice, the second time in the same order")
            #expect(try await depthOnceDeleted(store) == 0)
        }
        _ = try await TestBroker.connect().withChannel { try await $0.queueDelete(queue) }
    }

    /// Two relays (two processes' stores) on one file: one at a time holds the lease, so each
    /// event goes out once and in commit order.
    @Test func twoRelaysOnOneFilePublishEachEventOnceInOrder() async throws {
        let (store, path, exchange, queue) = try await prepare()
        let other = try SQLiteEventStore(path: path)
        var configuration = OutboxRelay.Configuration()
        configuration.pollInterval = .milliseconds(50)
        configuration.batchSize = 20
        try await withRelays([store, other], configuration: configuration) {
            for index in 0..<300 {
                try await (index % 2 == 0 ? store : other).database.write { db in
                    try store.enqueue(try order(index, exchange: exchange), in: db)
                }
            }
            let received = try await receive(300, from: queue)
            #expect(received.map(\.properties.messageID) == (0..<300).map { "order-\($0)-created" })
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await receive(1, from: queue, within: .milliseconds(500)).isEmpty, "no event went out twice")
        }
        _ = try await TestBroker.connect().withChannel { try await $0.queueDelete(queue) }
    }

    /// Two relays on one PostgreSQL database (two replicas of a service, each with its own
    /// client): each event goes out once and in commit order, the relays woken by the commits'
    /// notifications (a poll interval longer than the test).
    @Test(.enabled(if: TestPostgres.reachableOrRequired, "needs PostgreSQL; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"))
    func twoRelaysOnOnePostgresDatabasePublishEachEventOnceInOrder() async throws {
        let (_, _, exchange, queue) = try await prepare()
        try await TestPostgres.withDatabase { url in
            try await TestPostgres.withStore(url: url) { first in
                try await TestPostgres.withStore(url: url) { second in
                    var configuration = OutboxRelay.Configuration()
                    configuration.pollInterval = .seconds(600)
                    configuration.batchSize = 20
                    try await withRelays([first, second], configuration: configuration) {
                        for index in 0..<300 {
                            let store = index % 2 == 0 ? first : second
                            try await store.transaction { connection in
                                try await store.enqueue(try order(index, exchange: exchange), on: connection)
                            }
                        }
                        let received = try await receive(300, from: queue)
                        #expect(received.map(\.properties.messageID) == (0..<300).map { "order-\($0)-created" })
                        #expect(try await receive(1, from: queue, within: .milliseconds(500)).isEmpty, "no event went out twice")
                        #expect(try await depthOnceDeleted(first) == 0)
                    }
                }
            }
        }
        _ = try await TestBroker.connect().withChannel { try await $0.queueDelete(queue) }
    }
}

/// An outbox store whose first deletes fail.
final class FailingDeletes: OutboxStore {
    struct DeleteFailed: Error {}
    let store: SQLiteEventStore
    private let failuresLeft: Locked<Int>

    init(_ store: SQLiteEventStore, failures: Int) {
        self.store = store
        self.failuresLeft = Locked(failures)
    }

    func claimPending(owner: String, lease: Duration, limit: Int) async throws -> [OutboxMessage] {
        try await store.claimPending(owner: owner, lease: lease, limit: limit)
    }

    func deletePublished(_ sequences: [Int64]) async throws {
        let fail = failuresLeft.withLock { left in
            defer { left -= 1 }
            return left > 0
        }
        if fail { throw DeleteFailed() }
        try await store.deletePublished(sequences)
    }

    func releaseLease(owner: String) async throws { try await store.releaseLease(owner: owner) }
    func outboxChanges() -> AsyncStream<Void> { store.outboxChanges() }
    func outboxBacklog() async throws -> OutboxBacklog { try await store.outboxBacklog() }
}
