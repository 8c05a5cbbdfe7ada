import Foundation
import GRDB
import RabbitMQEvents
import RabbitMQEventsSQLite
import Testing

@Suite("SQLite event store: the inbox")
struct SQLiteEventStoreTests {
    struct Refused: Error {}

    /// A store on a new file in a temporary folder.
    static func temporaryStore() throws -> (SQLiteEventStore, String) {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("swift-rabbitmq-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let path = folder.appendingPathComponent("events.sqlite").path
        return (try SQLiteEventStore(path: path), path)
    }

    @Test func theWorkAndTheRecordCommitTogetherOncePerGroup() async throws {
        let (store, _) = try Self.temporaryStore()
        try await store.database.write { try $0.execute(sql: "CREATE TABLE stock (sku TEXT PRIMARY KEY, reserved INTEGER)") }
        let reserve: @Sendable (Database) throws -> Int = { db in
            try db.execute(sql: "INSERT INTO stock VALUES ('SKU-1', 2) ON CONFLICT DO UPDATE SET reserved = reserved + 2")
            return try Int.fetchOne(db, sql: "SELECT reserved FROM stock")!
        }
        #expect(try await store.once(messageID: "m1", consumerGroup: "inventory", reserve) == .handled(2))
        #expect(try await store.once(messageID: "m1", consumerGroup: "inventory", reserve) == .duplicate)
        #expect(try await store.once(messageID: "m1", consumerGroup: "audit", reserve) == .handled(4))
        #expect(try await store.inboxContains("m1", consumerGroup: "inventory"))
        #expect(try await !store.inboxContains("m2", consumerGroup: "inventory"))
    }

    /// Work that throws after writing: its writes roll back and the event stays unrecorded, so
    /// the redelivery runs it again.
    @Test func failedWorkLeavesNothing() async throws {
        let (store, _) = try Self.temporaryStore()
        try await store.database.write { try $0.execute(sql: "CREATE TABLE effects (id TEXT)") }
        await #expect(throws: Refused.self) {
            _ = try await store.once(messageID: "m1", consumerGroup: "g") { db in
                try db.execute(sql: "INSERT INTO effects VALUES ('m1')")
                throw Refused()
            }
        }
        #expect(try await store.database.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM effects") } == 0)
        #expect(try await !store.inboxContains("m1", consumerGroup: "g"))
        #expect(try await store.once(messageID: "m1", consumerGroup: "g") { _ in 1 } == .handled(1))
    }

    @Test func reopeningKeepsTheRecordsAndPruningDropsOldOnes() async throws {
        let (store, path) = try Self.temporaryStore()
        _ = try await store.once(messageID: "old", consumerGroup: "g") { _ in () }
        let reopened = try SQLiteEventStore(path: path)
        #expect(try await !reopened.once(messageID: "old", consumerGroup: "g") { _ in () }.wasHandled)
        #expect(try await reopened.pruneInbox(handledBefore: Date().addingTimeInterval(60)) == 1)
        #expect(try await reopened.once(messageID: "old", consumerGroup: "g") { _ in () }.wasHandled)
    }

    /// Many tasks on two stores (two connection pools) of one file deliver the same ids: each
    /// id's work commits exactly once.
    @Test func concurrentDeliveriesOfOneIdRunItOnce() async throws {
        let (first, path) = try Self.temporaryStore()
        let second = try SQLiteEventStore(path: path)
        try await first.database.write { try $0.execute(sql: "CREATE TABLE effects (id TEXT)") }
        let handled = try await withThrowingTaskGroup(of: Int.self) { group in
            for attempt in 0..<400 {
                let store = attempt % 2 == 0 ? first : second
                group.addTask {
                    let id = "m\(attempt % 50)"
                    let outcome = try await store.once(messageID: id, consumerGroup: "g") { db in
                        try db.execute(sql: "INSERT INTO effects VALUES (?)", arguments: [id])
                    }
                    return outcome.wasHandled ? 1 : 0
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(handled == 50)
        let distinct = try await first.database.read { try Int.fetchOne($0, sql: "SELECT COUNT(DISTINCT id) FROM effects") }
        let rows = try await first.database.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM effects") }
        #expect(distinct == 50 && rows == 50)
    }
}
