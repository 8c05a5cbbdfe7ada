import Foundation
import OrderEvents
import PostgresNIO
import RabbitMQ
import RabbitMQEvents
import RabbitMQEventsPostgres
import Testing

/// The PostgreSQL store against a real server: the inbox's transaction, the outbox's order,
/// lease and wake-ups. Each test has a database of its own.
@Suite(
    "PostgreSQL event store",
    .enabled(if: TestPostgres.reachableOrRequired, "needs PostgreSQL (scripts/postgres); CI and AMQP_REQUIRE_BROKER=1 make it fail instead"),
    .watchdog)
struct PostgresStoreTests {
    struct Refused: Error {}

    static func reserved(_ connection: PostgresConnection) async throws -> Int {
        try await connection.query("SELECT reserved FROM stock", logger: TestPostgres.logger)
            .collect().first?.decode(Int.self) ?? -1
    }

    @Test func theWorkAndTheRecordCommitTogetherOncePerGroup() async throws {
        try await TestPostgres.withDatabase { url in
            try await TestPostgres.withStore(url: url) { store in
                try await store.transaction { try await $0.query("CREATE TABLE stock (reserved INTEGER)", logger: TestPostgres.logger) }
                try await store.transaction { try await $0.query("INSERT INTO stock VALUES (0)", logger: TestPostgres.logger) }
                let reserve: (PostgresConnection) async throws -> Int = { connection in
                    try await connection.query("UPDATE stock SET reserved = reserved + 2", logger: TestPostgres.logger)
                    return try await Self.reserved(connection)
                }
                #expect(try await store.once(messageID: "m1", consumerGroup: "inventory", reserve) == .handled(2))
                #expect(try await store.once(messageID: "m1", consumerGroup: "inventory", reserve) == .duplicate)
                #expect(try await store.once(messageID: "m1", consumerGroup: "audit", reserve) == .handled(4))
                #expect(try await store.inboxContains("m1", consumerGroup: "inventory"))
                #expect(try await !store.inboxContains("m2", consumerGroup: "inventory"))

                // Failed work: nothing it wrote stays, the event is not recorded.
                await #expect(throws: Refused.self) {
                    try await store.once(messageID: "m2", consumerGroup: "inventory") { connection in
                        try await connection.query("UPDATE stock SET reserved = 1000", logger: TestPostgres.logger)
                        throw Refused()
                    }
                }
                #expect(try await !store.inboxContains("m2", consumerGroup: "inventory"))
                #expect(try await store.transaction { try await Self.reserved($0) } == 4)
                #expect(try await store.pruneInbox(handledBefore: Date().addingTimeInterval(60)) == 2)
            }
        }
    }

    /// Twenty deliveries of one id at once (a redelivery racing the original on two replicas):
    /// the work runs once.
    @Test func concurrentDeliveriesOfOneIdRunItOnce() async throws {
        try await TestPostgres.withDatabase { url in
            try await TestPostgres.withStore(url: url) { store in
                try await store.transaction { try await $0.query("CREATE TABLE effects (n INTEGER)", logger: TestPostgres.logger) }
                let handled = try await withThrowingTaskGroup(of: Bool.self) { group in
                    for _ in 0..<20 {
                        group.addTask {
                            try await store.once(messageID: "same", consumerGroup: "g") { connection in
                                try await connection.query("INSERT INTO effects VALUES (1)", logger: TestPostgres.logger)
                            }.wasHandled
                        }
                    }
                    return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
                }
                #expect(handled == 1)
                let effects = try await store.transaction {
                    try await $0.query("SELECT COUNT(*) FROM effects", logger: TestPostgres.logger).collect().first?.decode(Int.self)
                }
                #expect(effects == 1)
            }
        }
    }

    /// Committed events come out in commit order, a rolled-back one never; one relay at a time
    /// holds the lease, another takes over once it expires or is released.
    @Test func outboxOrderAndLease() async throws {
        try await TestPostgres.withDatabase { url in
            try await TestPostgres.withStore(url: url) { store in
                for index in 0..<5 {
                    try await store.transaction { connection in
                        try await store.enqueue(
                            OrderCreated(orderID: "order-\(index)", customerID: "c", items: []), exchange: "orders",
                            messageID: "order-\(index)-created", on: connection)
                    }
                }
                await #expect(throws: Refused.self) {
                    try await store.transaction { connection in
                        try await store.enqueue(
                            OrderCreated(orderID: "rolled-back", customerID: "c", items: []), exchange: "orders", on: connection)
                        throw Refused()
                    }
                }
                let batch = try await store.claimPending(owner: "first", lease: .seconds(10), limit: 10)
                #expect(batch.map(\.messageID) == (0..<5).map { "order-\($0)-created" })
                #expect(batch.first?.partitionKey == "order-0")
                #expect(batch.first?.routingKey == "order.created")
                // Another process's relay (another client): nothing while the first holds the lock.
                try await TestPostgres.withStore(url: url) { other in
                    #expect(try await other.claimPending(owner: "second", lease: .seconds(10), limit: 10).isEmpty)
                    try await store.releaseLease(owner: "first")
                    let deadline = ContinuousClock.now + .seconds(60)
                    var taken: [OutboxMessage] = []
                    while taken.isEmpty, ContinuousClock.now < deadline {
                        taken = try await other.claimPending(owner: "second", lease: .seconds(10), limit: 10)
                        if taken.isEmpty { try await Task.sleep(for: .milliseconds(50)) }
                    }
                    #expect(taken.count == 5, "the second relay took over once the first released the lock")
                    #expect(try await store.claimPending(owner: "first", lease: .seconds(10), limit: 10).isEmpty)
                }
                // The second relay's process dies: the server ends its sessions, and its lock
                // with them (no lease to wait out), so the first takes over at once. Ended here
                // by the server, as at a process's death: a PostgresClient's shutdown alone does
                // not always end its sessions at once (seen under load: a session kept the lock,
                // idle, for over a minute after its client had stopped).
                try await TestPostgres.terminateRelayLockHolders(url: url)
                let deadline = ContinuousClock.now + .seconds(60)
                var taken: [OutboxMessage] = []
                while taken.isEmpty, ContinuousClock.now < deadline {
                    taken = try await store.claimPending(owner: "first", lease: .seconds(600), limit: 2)
                    if taken.isEmpty { try await Task.sleep(for: .milliseconds(20)) }
                }
                let holders = taken.isEmpty ? try await TestPostgres.advisoryLockHolders(url: url) : []
                #expect(taken.count == 2, "the lock's holders: \(holders)")
                try await store.deletePublished(batch.prefix(3).map(\.sequence))
                let backlog = try await store.outboxBacklog()
                #expect(backlog.count == 2)
                #expect(backlog.oldest != nil)
            }
        }
    }

    /// Several events written in one statement (`enqueue(contentsOf:on:)`) keep their order,
    /// between the single writes around them, with every field as given; a rolled-back batch
    /// leaves nothing.
    @Test func aBatchIsWrittenInOneStatementInOrder() async throws {
        try await TestPostgres.withDatabase { url in
            try await TestPostgres.withStore(url: url) { store in
                func message(_ index: Int) throws -> OutboxMessage {
                    var message = try OutboxMessage(
                        OrderCreated(orderID: "order-\(index)", customerID: "c", items: []), exchange: "orders",
                        messageID: "m-\(index)")
                    message.partitionKey = index % 3 == 0 ? nil : "key-\(index % 7)"
                    message.body = [0, UInt8(index % 256), 255] + Array("body \(index)".utf8)
                    return message
                }
                let expected = try (0...301).map(message)
                try await store.transaction { connection in
                    try await store.enqueue(expected[0], on: connection)
                    try await store.enqueue(contentsOf: Array(expected[1...300]), on: connection)
                    try await store.enqueue(contentsOf: [], on: connection)
                    try await store.enqueue(expected[301], on: connection)
                }
                await #expect(throws: Refused.self) {
                    try await store.transaction { connection in
                        try await store.enqueue(contentsOf: try (400..<410).map(message), on: connection)
                        throw Refused()
                    }
                }
                let written = try await store.claimPending(owner: "relay", lease: .seconds(10), limit: 1000)
                #expect(written.map(\.messageID) == expected.map(\.messageID))
                #expect(written.map(\.partitionKey) == expected.map(\.partitionKey))
                #expect(written.map(\.body) == expected.map(\.body))
                #expect(written.allSatisfy { $0.exchange == "orders" && $0.routingKey == "order.created" })
                #expect(written.allSatisfy { $0.eventType == "OrderCreated" && $0.contentType == "application/json" })
                #expect(zip(written, expected).allSatisfy { abs($0.createdAt.timeIntervalSince($1.createdAt)) < 0.001 })
                #expect(zip(written, written.dropFirst()).allSatisfy { $0.sequence < $1.sequence })
            }
        }
    }

    /// A commit in another process (another client) wakes this one's relay: PostgreSQL delivers
    /// the `NOTIFY` at commit.
    @Test func aCommitElsewhereWakesTheRelay() async throws {
        try await TestPostgres.withDatabase { url in
            try await TestPostgres.withStore(url: url) { store in
                let changes = store.outboxChanges()
                try await Task.sleep(for: .milliseconds(300))  // listening
                let woken = Task {
                    for await _ in changes { return true }
                    return false
                }
                try await TestPostgres.withStore(url: url) { other in
                    try await other.transaction { connection in
                        try await other.enqueue(
                            OrderCreated(orderID: "o", customerID: "c", items: []), exchange: "orders", on: connection)
                    }
                }
                let outcome = try await withThrowingTaskGroup(of: Bool.self) { group in
                    group.addTask { await woken.value }
                    group.addTask {
                        try await Task.sleep(for: .seconds(60))
                        return false
                    }
                    let first = try await group.next() ?? false
                    group.cancelAll()
                    woken.cancel()
                    return first
                }
                #expect(outcome, "no notification within a minute of the commit")
            }
        }
    }
}
