import Foundation
import GRDB
import RabbitMQ
import RabbitMQEvents

/// Group commit for the inbox: the `once` calls that wait for SQLite's single writer at the same
/// moment share one transaction, each inside a savepoint of its own.
///
/// SQLite commits one transaction at a time, and most of a small transaction's cost is the
/// transaction itself (taking the write lock, writing the changed pages to the WAL, the hop to
/// the writer's thread), not its statements. While a batch is being written, the calls that
/// arrive queue here; the next batch takes them all (up to ``maximumBatch``).
///
/// What each call is promised does not change: its work and its record commit together or not
/// at all. A work that throws rolls back to its savepoint (its writes and its record go, the
/// others' stay); a transaction that fails to begin or to commit fails every call in it, and
/// none of them is recorded. The works of a batch run one after another in arrival order, each
/// seeing what the ones before it wrote, as consecutive transactions would. A caller returns
/// only after the commit.
final class InboxBatches: Sendable {
    /// Most calls committed by one transaction: bounds how long one batch holds the writer from
    /// the application's own writes queued behind it.
    static let maximumBatch = 256

    private struct State {
        var waiting: [any InboxBatchEntry] = []
        /// A batch is queued on the writer or being written; it takes the next one when done.
        var scheduled = false
        /// Transactions written so far (for tests).
        var batchesWritten = 0
    }

    private let database: DatabasePool
    private let state = Locked(State())

    init(database: DatabasePool) {
        self.database = database
    }

    /// Runs `work` and records `messageID` for `consumerGroup` in the next batch, unless it is
    /// recorded already (in the database, or by an earlier call of the same batch).
    func once<Result: Sendable>(
        messageID: String, consumerGroup: String, _ work: @Sendable (Database) throws -> Result
    ) async throws -> InboxOutcome<Result> {
        // The work is held by its entry only until it ran: the entry lets go of it before the
        // caller resumes, so it never outlives this call.
        try await withoutActuallyEscaping(work) { work in
            try await withCheckedThrowingContinuation { continuation in
                enqueue(
                    InboxCall(messageID: messageID, consumerGroup: consumerGroup, work: work, continuation: continuation))
            }
        }
    }

    /// Calls waiting for a batch (for tests).
    var waitingCount: Int { state.withLock { $0.waiting.count } }

    /// Transactions written so far (for tests).
    var batchesWritten: Int { state.withLock { $0.batchesWritten } }

    private func enqueue(_ call: any InboxBatchEntry) {
        let schedule = state.withLock { state in
            state.waiting.append(call)
            if state.scheduled { return false }
            state.scheduled = true
            return true
        }
        if schedule { scheduleBatch() }
    }

    /// Queues a batch on the writer, behind whatever the application queued there already.
    private func scheduleBatch() {
        database.asyncWriteWithoutTransaction { [self] db in writeBatch(db) }
    }

    private static let batchRolledBack = DatabaseError(
        resultCode: .SQLITE_ABORT, message: "an inbox call could not be rolled back alone, so its whole batch was")

    private func writeBatch(_ db: Database) {
        let batch = state.withLock { state in
            let count = min(state.waiting.count, Self.maximumBatch)
            defer { state.waiting.removeFirst(count) }
            state.batchesWritten += 1
            return Array(state.waiting.prefix(count))
        }
        var failure: (any Error)?
        do {
            try db.inTransaction(.immediate) { () throws -> Database.TransactionCompletion in
                for call in batch {
                    // A call's writes could not be taken back alone: none of the batch commits.
                    guard call.run(in: db) else { throw Self.batchRolledBack }
                }
                return .commit
            }
        } catch {
            failure = error
        }
        for call in batch { call.finish(transactionError: failure) }
        let more = state.withLock { state in
            if state.waiting.isEmpty { state.scheduled = false }
            return state.scheduled
        }
        if more { scheduleBatch() }
    }
}

/// One waiting call, whatever its work's result type.
protocol InboxBatchEntry: AnyObject, Sendable {
    /// Runs the call in its own savepoint of the batch's transaction; keeps its outcome.
    /// Returns `false` when the transaction can no longer be trusted (the call's writes could
    /// not be rolled back alone, or SQLite ended the transaction): the batch must not commit.
    func run(in db: Database) -> Bool
    /// The batch's transaction ended (committed when `transactionError` is nil): resumes the
    /// caller.
    func finish(transactionError: (any Error)?)
}

/// A `once` call waiting in a batch.
private final class InboxCall<Result: Sendable>: InboxBatchEntry, @unchecked Sendable {
    // @unchecked: `work` and `outcome` are touched by the writer's thread only, between the
    // batch taking the call (under the batches' lock, after `init` finished) and `finish`,
    // which resumes the caller last; nothing else reads them.
    private let messageID: String
    private let consumerGroup: String
    private var work: (@Sendable (Database) throws -> Result)?
    private var outcome: Swift.Result<InboxOutcome<Result>, any Error>?
    private let continuation: CheckedContinuation<InboxOutcome<Result>, any Error>

    init(
        messageID: String, consumerGroup: String, work: @escaping @Sendable (Database) throws -> Result,
        continuation: CheckedContinuation<InboxOutcome<Result>, any Error>
    ) {
        self.messageID = messageID
        self.consumerGroup = consumerGroup
        self.work = work
        self.continuation = continuation
    }

    func run(in db: Database) -> Bool {
        guard let work else { return true }
        self.work = nil
        // SQLite ends a transaction by itself after some failures (a full disk, say): what runs
        // after that would commit on its own, outside the batch.
        guard db.isInsideTransaction else {
            outcome = .failure(DatabaseError(resultCode: .SQLITE_ABORT, message: "the inbox batch's transaction ended early"))
            return false
        }
        // A savepoint of prepared statements (GRDB's `inSavepoint` parses its SQL every time).
        do {
            try db.cachedStatement(sql: "SAVEPOINT rabbitmq_inbox_call").execute()
        } catch {
            outcome = .failure(error)
            return false
        }
        do {
            try db.cachedStatement(sql: Self.insert).execute(
                arguments: [consumerGroup, messageID, Int64(Date().timeIntervalSince1970 * 1000)])
            var result = InboxOutcome<Result>.duplicate
            if db.changesCount == 1 { result = .handled(try work(db)) }
            try db.cachedStatement(sql: "RELEASE SAVEPOINT rabbitmq_inbox_call").execute()
            outcome = .success(result)
            return true
        } catch {
            outcome = .failure(error)
            do {
                try db.cachedStatement(sql: "ROLLBACK TO SAVEPOINT rabbitmq_inbox_call").execute()
                try db.cachedStatement(sql: "RELEASE SAVEPOINT rabbitmq_inbox_call").execute()
                return true
            } catch {
                return false
            }
        }
    }

    func finish(transactionError: (any Error)?) {
        work = nil  // when the transaction could not even begin
        if case .failure(let error)? = outcome {
            continuation.resume(throwing: error)
        } else if let transactionError {
            continuation.resume(throwing: transactionError)
        } else if case .success(let outcome)? = outcome {
            continuation.resume(returning: outcome)
        } else {
            continuation.resume(throwing: DatabaseError(resultCode: .SQLITE_ABORT, message: "the inbox call did not run"))
        }
    }

    private static var insert: String {
        "INSERT INTO rabbitmq_inbox (consumer_group, message_id, handled_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
    }
}
