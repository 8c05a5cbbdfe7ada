import Foundation
import GRDB
import RabbitMQEvents
import RabbitMQEventsSQLite
import Testing

@Suite("SQLite event store: the outbox lease")
struct OutboxLeaseTests {
    static func storeWithOneEvent() async throws -> SQLiteEventStore {
        let (store, _) = try SQLiteEventStoreTests.temporaryStore()
        try await store.database.write { db in
            try store.enqueue(
                OutboxMessage(
                    messageID: "m1", exchange: "orders", routingKey: "order.created", eventType: "OrderCreated",
                    contentType: "application/json", partitionKey: nil, body: Array("{}".utf8)),
                in: db)
        }
        return store
    }

    @Test func aLiveRelaysLeaseHoldsUntilReleased() async throws {
        let store = try await Self.storeWithOneEvent()
        #expect(try await store.claimPending(owner: "first", lease: .seconds(600), limit: 10).count == 1)
        #expect(try await store.claimPending(owner: "second", lease: .seconds(600), limit: 10).isEmpty)
        try await store.releaseLease(owner: "first")
        #expect(try await store.claimPending(owner: "second", lease: .seconds(600), limit: 10).count == 1)
    }

    /// A relay killed with SIGKILL leaves its lease behind; the relay started in its place (the
    /// same service restarted) must not wait for the lease to expire: the holder's process is
    /// gone, and a SQLite file is only shared on one machine, where that can be checked.
    @Test func aLeaseWhoseProcessIsGoneIsTakenOverAtOnce() async throws {
        let store = try await Self.storeWithOneEvent()
        let gone = Int64(Int32.max)  // above any pid_max: no such process
        try await store.database.write { db in
            try db.execute(
                sql: "INSERT INTO rabbitmq_outbox_lease (id, owner, expires_at, pid) VALUES (1, 'killed', ?, ?)",
                arguments: [Int64(Date().timeIntervalSince1970 * 1000) + 600_000, gone])
        }
        #expect(try await store.claimPending(owner: "restarted", lease: .seconds(600), limit: 10).count == 1)
    }

    /// A file written before the lease recorded its process: the column is added on open.
    @Test func aLeaseTableWithoutTheProcessColumnIsUpgraded() async throws {
        let (store, path) = try SQLiteEventStoreTests.temporaryStore()
        try await store.database.write { db in
            try db.execute(sql: "DROP TABLE rabbitmq_outbox_lease")
            try db.execute(
                sql: "CREATE TABLE rabbitmq_outbox_lease (id INTEGER PRIMARY KEY CHECK (id = 1), owner TEXT NOT NULL, expires_at INTEGER NOT NULL)")
        }
        let reopened = try SQLiteEventStore(path: path)
        let columns = try await reopened.database.read { try $0.columns(in: "rabbitmq_outbox_lease").map(\.name) }
        #expect(columns.contains("pid"))
        #expect(try await reopened.claimPending(owner: "relay", lease: .seconds(1), limit: 10).isEmpty)
    }
}
