import Foundation
import GRDB
import RabbitMQEvents
import Testing

@testable import RabbitMQEventsSQLite

@Suite("SQLite event store: the inbox's group commit")
struct InboxBatchesTests {
    struct Refused: Error {}

    /// Holds the store's writer, as an application's own write would, while `calls` makes inbox
    /// calls; its `release` waits (a minute at most) until `count` of them are queued, then lets
    /// the writer go, so they all go into one batch.
    static func holdingTheWriter<T: Sendable>(
        of store: SQLiteEventStore, until count: Int, _ calls: (_ release: () async throws -> Void) async throws -> T
    ) async throws -> T {
        let gate = DispatchSemaphore(value: 0)
        let (entered, enteredContinuation) = AsyncStream.makeStream(of: Void.self)
        let holder = Task {
            try await store.database.write { _ in
                enteredContinuation.yield()
                gate.wait()
            }
        }
        for await _ in entered { break }
        do {
            let result = try await calls {
                for _ in 0..<6000 where store.inboxBatches.waitingCount < count {
                    try await Task.sleep(for: .milliseconds(10))
                }
                #expect(store.inboxBatches.waitingCount == count)
                gate.signal()
            }
            try await holder.value
            return result
        } catch {
            gate.signal()  // never leave the writer held
            throw error
        }
    }

    /// Calls that wait while the writer is busy share its next transaction, and each keeps its
    /// own promise: a work that throws takes back only its own writes, a recorded id (in the
    /// database, or by an earlier call of the same batch) is a duplicate.
    @Test func callsThatWaitTogetherShareOneTransaction() async throws {
        let (store, _) = try SQLiteEventStoreTests.temporaryStore()
        try await store.database.write { try $0.execute(sql: "CREATE TABLE effects (id TEXT)") }
        _ = try await store.once(messageID: "m7", consumerGroup: "g") { _ in () }
        let batchesBefore = store.inboxBatches.batchesWritten

        // The application holds the writer; meanwhile every call queues.
        let ids = (0..<100).map { "m\($0)" } + ["twin", "twin"]
        let outcomes = try await Self.holdingTheWriter(of: store, until: ids.count) { release in
            try await withThrowingTaskGroup(of: (String, String).self) { group in
                for (index, id) in ids.enumerated() {
                    group.addTask {
                        do {
                            let outcome = try await store.once(messageID: id, consumerGroup: "g") { db in
                                try db.execute(sql: "INSERT INTO effects VALUES (?)", arguments: [id])
                                if index % 10 == 3 { throw Refused() }
                            }
                            return (id, outcome.wasHandled ? "handled" : "duplicate")
                        } catch is Refused {
                            return (id, "refused")
                        }
                    }
                }
                try await release()
                return try await group.reduce(into: [(String, String)]()) { $0.append($1) }
            }
        }

        #expect(store.inboxBatches.batchesWritten == batchesBefore + 1)
        let byID = Dictionary(grouping: outcomes, by: \.0).mapValues { $0.map(\.1).sorted() }
        for index in 0..<100 {
            let expected = index % 10 == 3 ? "refused" : index == 7 ? "duplicate" : "handled"
            #expect(byID["m\(index)"] == [expected], "m\(index)")
        }
        #expect(byID["twin"] == ["duplicate", "handled"])

        let handled = Set(ids.indices.filter { $0 % 10 != 3 && $0 != 7 }.map { ids[$0] })
        let effects = try await store.database.read { try String.fetchAll($0, sql: "SELECT id FROM effects") }
        #expect(effects.sorted() == handled.sorted())
        for index in 0..<100 where index % 10 == 3 {
            #expect(try await !store.inboxContains("m\(index)", consumerGroup: "g"))
        }
        #expect(try await store.inboxContains("twin", consumerGroup: "g"))
    }

    /// A work whose failure ends the whole transaction (here a trigger's `RAISE(ROLLBACK)`)
    /// takes its batch with it: every call in it fails and none is recorded, so nothing commits
    /// half a batch; the others go through when delivered again.
    @Test func aWorkThatEndsTheTransactionFailsItsWholeBatch() async throws {
        let (store, _) = try SQLiteEventStoreTests.temporaryStore()
        try await store.database.write { db in
            try db.execute(sql: "CREATE TABLE effects (id TEXT)")
            try db.execute(
                sql: """
                    CREATE TRIGGER poison BEFORE INSERT ON effects WHEN NEW.id = 'poison'
                    BEGIN SELECT RAISE(ROLLBACK, 'poisoned'); END
                    """)
        }
        let ids = ["a", "poison", "b"]
        let failed = try await Self.holdingTheWriter(of: store, until: ids.count) { release in
            try await withThrowingTaskGroup(of: Bool.self) { group in
                for id in ids {
                    group.addTask {
                        do {
                            _ = try await store.once(messageID: id, consumerGroup: "g") { db in
                                try db.execute(sql: "INSERT INTO effects VALUES (?)", arguments: [id])
                            }
                            return false
                        } catch is DatabaseError {
                            return true
                        }
                    }
                }
                try await release()
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
        }
        #expect(failed == 3)
        #expect(try await store.database.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM effects") } == 0)
        for id in ids { #expect(try await !store.inboxContains(id, consumerGroup: "g"), "\(id)") }
        for id in ["a", "b"] {
            #expect(try await store.once(messageID: id, consumerGroup: "g") { _ in () }.wasHandled, "\(id)")
        }
    }

    /// A transaction that cannot begin (another process holds the write lock beyond the busy
    /// timeout) fails the calls in it and records none of them; they go through once the lock
    /// is free.
    @Test func aTransactionThatCannotBeginFailsItsCallsAndRecordsNone() async throws {
        let (_, path) = try SQLiteEventStoreTests.temporaryStore()
        var configuration = SQLiteEventStore.Configuration()
        configuration.busyTimeout = .milliseconds(100)
        let store = try SQLiteEventStore(path: path, configuration: configuration)
        try await store.database.write { try $0.execute(sql: "CREATE TABLE effects (id TEXT)") }

        var blockerConfiguration = GRDB.Configuration()
        blockerConfiguration.allowsUnsafeTransactions = true
        let blocker = try DatabaseQueue(path: path, configuration: blockerConfiguration)
        try await blocker.writeWithoutTransaction { try $0.execute(sql: "BEGIN IMMEDIATE") }

        let failures = await withTaskGroup(of: Bool.self) { group in
            for id in ["a", "b", "c"] {
                group.addTask {
                    do {
                        _ = try await store.once(messageID: id, consumerGroup: "g") { db in
                            try db.execute(sql: "INSERT INTO effects VALUES (?)", arguments: [id])
                        }
                        return false
                    } catch let error as DatabaseError {
                        return error.resultCode == .SQLITE_BUSY
                    } catch {
                        return false
                    }
                }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(failures == 3)

        try await blocker.writeWithoutTransaction { try $0.execute(sql: "COMMIT") }
        #expect(try await store.database.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM effects") } == 0)
        for id in ["a", "b", "c"] {
            #expect(try await !store.inboxContains(id, consumerGroup: "g"))
            #expect(try await store.once(messageID: id, consumerGroup: "g") { _ in () }.wasHandled)
        }
    }
}
