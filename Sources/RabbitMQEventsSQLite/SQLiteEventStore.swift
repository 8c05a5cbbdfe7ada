import Foundation
import GRDB
import RabbitMQ
import RabbitMQEvents

/// The event layer's store on SQLite (through GRDB): an `EventInbox` (RabbitMQEvents) whose
/// transaction is a GRDB `Database`, so a handler's own tables and the inbox record commit
/// together.
///
/// ```swift
/// let store = try SQLiteEventStore(path: "inventory.sqlite")
/// handlers.on(OrderCreated.self) { order, context in
///     _ = try await store.once(context) { db in
///         try db.execute(sql: "UPDATE stock SET reserved = reserved + ? WHERE sku = ?", arguments: [2, "SKU-1"])
///     }
/// }
/// ```
///
/// The database is in WAL mode, so readers never wait for the writer; several processes on one
/// machine may share the file (daemon replicas): each write is an `IMMEDIATE` transaction (the
/// inbox's calls that arrive together share one), and a process that finds another one writing
/// waits for it (up to ``Configuration/busyTimeout``) instead of failing. Do not put the file on
/// a network file system: SQLite's locks do not hold there.
///
/// It is also an `OutboxStore`: ``enqueue(_:in:)`` writes an event in the application's own
/// transaction, and an `OutboxRelay` publishes it once committed.
///
/// Tables (created when missing): `rabbitmq_inbox (consumer_group, message_id, handled_at)`,
/// primary key `(consumer_group, message_id)`; `rabbitmq_outbox` (the events waiting, in commit
/// order) and `rabbitmq_outbox_lease` (which relay publishes, and from which process: a lease
/// whose process is gone, a relay killed with its service, is taken over at once instead of when
/// it expires). Keep inbox records at least as
/// long as a message can be redelivered (hours, not seconds); ``pruneInbox(handledBefore:)``
/// drops older ones.
public final class SQLiteEventStore: EventInbox, OutboxStore, Sendable {
    /// How the store opens its database.
    public struct Configuration: Sendable {
        /// How long a write waits for another connection (or process) that holds the write lock.
        public var busyTimeout: Duration = .seconds(30)

        /// The default configuration.
        public init() {}
    }

    /// The store's database: use it for the application's own tables too (its reads and
    /// writes, its migrations).
    public let database: DatabasePool

    /// The inbox's group commit (see ``once(messageID:consumerGroup:_:)``).
    let inboxBatches: InboxBatches

    /// Opens (creating if needed) the database at `path` and its tables.
    ///
    /// - Throws: GRDB's `DatabaseError` when the file cannot be opened or is not a database.
    public init(path: String, configuration: Configuration = Configuration()) throws {
        var options = GRDB.Configuration()
        options.busyMode = .timeout(configuration.busyTimeout.secondsValue)
        database = try Self.open(path, options, patience: configuration.busyTimeout)
        inboxBatches = InboxBatches(database: database)
        // Idempotent, so processes that open a new file at the same time all succeed.
        try database.write { db in
            try db.execute(
                sql: """
                    CREATE TABLE IF NOT EXISTS rabbitmq_inbox (
                        consumer_group TEXT NOT NULL,
                        message_id TEXT NOT NULL,
                        handled_at INTEGER NOT NULL,
                        PRIMARY KEY (consumer_group, message_id)
                    ) WITHOUT ROWID;
                    CREATE INDEX IF NOT EXISTS rabbitmq_inbox_handled_at ON rabbitmq_inbox (handled_at);
                    CREATE TABLE IF NOT EXISTS rabbitmq_outbox (
                        sequence INTEGER PRIMARY KEY AUTOINCREMENT,
                        message_id TEXT NOT NULL,
                        exchange TEXT NOT NULL,
                        routing_key TEXT NOT NULL,
                        event_type TEXT NOT NULL,
                        content_type TEXT NOT NULL,
                        partition_key TEXT,
                        body BLOB NOT NULL,
                        created_at INTEGER NOT NULL
                    );
                    CREATE TABLE IF NOT EXISTS rabbitmq_outbox_lease (
                        id INTEGER PRIMARY KEY CHECK (id = 1),
                        owner TEXT NOT NULL,
                        expires_at INTEGER NOT NULL,
                        pid INTEGER
                    );
                    """)
            // Files from before the lease recorded its relay's process.
            if try !db.columns(in: "rabbitmq_outbox_lease").contains(where: { $0.name == "pid" }) {
                try db.execute(sql: "ALTER TABLE rabbitmq_outbox_lease ADD COLUMN pid INTEGER")
            }
        }
    }

    /// Whether another relay holds an unexpired lease: it publishes, unless its process died
    /// (killed, crashed): then the relay started in its place goes on at once instead of after
    /// the lease.
    private static func leaseIsHeldByAnother(than owner: String, _ db: Database) throws -> Bool {
        guard let row = try Row.fetchOne(db, sql: "SELECT owner, expires_at, pid FROM rabbitmq_outbox_lease WHERE id = 1")
        else { return false }
        let holder: String = row["owner"]
        let expiresAt: Int64 = row["expires_at"]
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        return holder != owner && expiresAt > now && !processIsGone(row["pid"])
    }

    /// Whether the process `pid` (on this machine: a SQLite file is only shared there) is gone,
    /// so a lease it holds can be taken over at once rather than when it expires.
    private static func processIsGone(_ pid: Int64?) -> Bool {
        guard let pid, pid > 0 else { return false }
        if pid > Int64(Int32.max) { return true }
        return kill(pid_t(pid), 0) == -1 && errno == ESRCH
    }

    /// Opens the pool, waiting while another process holds the file's lock: processes opening a
    /// new file at the same moment (replicas starting together) all switch it to WAL, and SQLite
    /// answers that with `SQLITE_BUSY` at once rather than after the busy timeout.
    private static func open(
        _ path: String, _ options: GRDB.Configuration, patience: Duration
    ) throws -> DatabasePool {
        let deadline = ContinuousClock.now + patience
        while true {
            do {
                return try DatabasePool(path: path, configuration: options)
            } catch let error as DatabaseError
                where (error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED)
                && ContinuousClock.now < deadline
            {
                usleep(UInt32.random(in: 5_000...50_000))
            }
        }
    }

    /// Runs `work` and records the event in one `IMMEDIATE` transaction, unless the event is
    /// recorded already (then `work` does not run). When `work` throws, its writes roll back and
    /// the event is not recorded.
    ///
    /// Calls made while the database is busy writing share the next transaction (group
    /// commit), each in a savepoint of its own: what one call's work writes, and its record,
    /// still commit together or not at all, and a work that throws takes back only its own
    /// writes. Returns after the commit. Works of one transaction run one after another; keep
    /// them short, as any work in a write transaction (a slow one delays the commit of the
    /// others). Once queued, a call runs to its end even when its task is cancelled (SQLite
    /// could only interrupt the whole batch's transaction).
    public func once<Result: Sendable>(
        messageID: String, consumerGroup: String, _ work: @Sendable (Database) throws -> Result
    ) async throws -> InboxOutcome<Result> {
        try await inboxBatches.once(messageID: messageID, consumerGroup: consumerGroup, work)
    }

    /// Whether `messageID` is recorded for `consumerGroup`.
    public func inboxContains(_ messageID: String, consumerGroup: String) async throws -> Bool {
        try await database.read { db in
            try Bool.fetchOne(
                db, sql: "SELECT 1 FROM rabbitmq_inbox WHERE consumer_group = ? AND message_id = ?",
                arguments: [consumerGroup, messageID]) ?? false
        }
    }

    /// Deletes the records of events handled before `date`; returns how many.
    @discardableResult
    public func pruneInbox(handledBefore date: Date) async throws -> Int {
        try await database.write { db in
            try db.execute(
                sql: "DELETE FROM rabbitmq_inbox WHERE handled_at < ?",
                arguments: [Int64(date.timeIntervalSince1970 * 1000)])
            return db.changesCount
        }
    }

    // MARK: - Outbox

    /// Writes `message` to the outbox in the caller's transaction: it is published once the
    /// transaction commits (by an `OutboxRelay`), and never if it rolls back.
    ///
    /// ```swift
    /// try await store.database.write { db in
    ///     try db.execute(sql: "INSERT INTO orders (id, status) VALUES (?, 'PENDING')", arguments: [id])
    ///     try store.enqueue(OutboxMessage(OrderCreated(orderID: id, ...), exchange: "orders", messageID: "\(id)-created"), in: db)
    /// }
    /// ```
    public func enqueue(_ message: OutboxMessage, in db: Database) throws {
        try db.execute(
            sql: """
                INSERT INTO rabbitmq_outbox
                    (message_id, exchange, routing_key, event_type, content_type, partition_key, body, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                message.messageID, message.exchange, message.routingKey, message.eventType, message.contentType,
                message.partitionKey, Data(message.body), Int64(message.createdAt.timeIntervalSince1970 * 1000),
            ])
    }

    /// Writes `event` to the outbox in the caller's transaction, as `EventPublisher` would send
    /// it to `exchange`. Give it a `messageID` derived from what caused it (an order id, the
    /// message id of the event being handled) when the same cause could write it twice.
    ///
    /// A handler that publishes follow-up events writes them here inside its inbox transaction:
    /// the inbox record, its own writes and the follow-ups commit together, and the delivery is
    /// acknowledged after that commit (see ``once(messageID:consumerGroup:_:)``).
    ///
    /// ```swift
    /// handlers.on(OrderCreated.self) { order, context in
    ///     _ = try await store.once(context) { db in
    ///         try db.execute(sql: "UPDATE stock SET reserved = reserved + 1 WHERE sku = ?", arguments: ["SKU-1"])
    ///         try store.enqueue(
    ///             InventoryReserved(orderID: order.orderID, items: order.items), exchange: "orders",
    ///             messageID: "\(order.orderID)-reserved", in: db)
    ///     }
    /// }
    /// ```
    public func enqueue<Event: AMQPEvent>(
        _ event: Event, exchange: String, messageID: String = UUID().uuidString,
        codec: any EventCodec = JSONEventCodec(), in db: Database
    ) throws {
        try enqueue(OutboxMessage(event, exchange: exchange, messageID: messageID, codec: codec), in: db)
    }

    public func claimPending(owner: String, lease: Duration, limit: Int) async throws -> [OutboxMessage] {
        // A relay waiting for another's lease looks with a read, which takes no lock: the
        // business transactions writing to the file go on while it polls.
        if try await database.read({ try Self.leaseIsHeldByAnother(than: owner, $0) }) { return [] }
        return try await database.write { db in
            if try Self.leaseIsHeldByAnother(than: owner, db) { return [] }
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            let expiresAt = now + lease.wholeMilliseconds
            try db.execute(
                sql: """
                    INSERT INTO rabbitmq_outbox_lease (id, owner, expires_at, pid) VALUES (1, ?, ?, ?)
                    ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at, pid = excluded.pid
                    """,
                arguments: [owner, expiresAt, Int64(getpid())])
            let rows = try Row.fetchAll(
                db, sql: "SELECT * FROM rabbitmq_outbox ORDER BY sequence LIMIT ?", arguments: [limit])
            return rows.map(Self.outboxMessage)
        }
    }

    /// An outbox row as the message it stands for.
    private static func outboxMessage(_ row: Row) -> OutboxMessage {
        let body: Data = row["body"]
        let createdAt: Int64 = row["created_at"]
        return OutboxMessage(
            sequence: row["sequence"], messageID: row["message_id"], exchange: row["exchange"],
            routingKey: row["routing_key"], eventType: row["event_type"], contentType: row["content_type"],
            partitionKey: row["partition_key"], body: [UInt8](body),
            createdAt: Date(timeIntervalSince1970: Double(createdAt) / 1000))
    }

    public func deletePublished(_ sequences: [Int64]) async throws {
        try await database.write { db in
            for sequence in sequences {
                try db.execute(sql: "DELETE FROM rabbitmq_outbox WHERE sequence = ?", arguments: [sequence])
            }
        }
    }

    public func releaseLease(owner: String) async throws {
        try await database.write { db in
            try db.execute(sql: "DELETE FROM rabbitmq_outbox_lease WHERE owner = ?", arguments: [owner])
        }
    }

    public func outboxChanges() -> AsyncStream<Void> {
        let (changes, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let observation = DatabaseRegionObservation(tracking: Table("rabbitmq_outbox"))
        let cancellable = observation.start(
            in: database, onError: { _ in continuation.finish() }, onChange: { _ in continuation.yield() })
        let holder = CancellableHolder(cancellable)
        continuation.onTermination = { _ in holder.cancel() }
        return changes
    }

    /// Whether the database answers a query: what a service's health check asks of its store.
    public func isReachable() async -> Bool {
        (try? await database.read { try Int.fetchOne($0, sql: "SELECT 1") }) == 1
    }

    /// Events waiting in the outbox.
    public func outboxDepth() async throws -> Int {
        try await database.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM rabbitmq_outbox") ?? 0 }
    }

    public func outboxBacklog() async throws -> OutboxBacklog {
        try await database.read { db in
            let row = try Row.fetchOne(db, sql: "SELECT COUNT(*) AS count, MIN(created_at) AS oldest FROM rabbitmq_outbox")
            let oldest: Int64? = row?["oldest"]
            return OutboxBacklog(
                count: row?["count"] ?? 0, oldest: oldest.map { Date(timeIntervalSince1970: Double($0) / 1000) })
        }
    }
}

/// Keeps a GRDB observation alive until the stream it feeds ends.
private final class CancellableHolder: Sendable {
    private let cancellable: Locked<AnyDatabaseCancellable?>

    init(_ cancellable: AnyDatabaseCancellable) {
        self.cancellable = Locked(cancellable)
    }

    func cancel() {
        cancellable.withLock { $0 = nil }
    }
}
