import Foundation
import Logging
import PostgresNIO
import RabbitMQ
import RabbitMQEvents

/// The event layer's store on PostgreSQL (through postgres-nio), for services whose replicas run
/// on several machines: an inbox whose transaction is a `PostgresConnection` inside
/// `BEGIN … COMMIT`, so a handler's own writes and the inbox record commit together, and an
/// `OutboxStore` for `OutboxRelay`.
///
/// ```swift
/// let client = PostgresClient(configuration: try PostgresEventStore.configuration(url: url), backgroundLogger: logger)
/// let store = PostgresEventStore(client: client, logger: logger)
/// // run the client (it is a Service), then:
/// try await store.migrate()
/// handlers.on(OrderCreated.self) { order, context in
///     _ = try await store.once(context) { connection in
///         try await connection.query("UPDATE stock SET reserved = reserved + 1 WHERE sku = \(sku)", logger: logger)
///         try await store.enqueue(InventoryReserved(orderID: order.orderID, items: order.items),
///                                 exchange: "orders", messageID: "\(order.orderID)-reserved", on: connection)
///     }
/// }
/// ```
///
/// The outbox wakes relays on commit in every process: ``enqueue(_:on:)`` sends a
/// `NOTIFY rabbitmq_outbox`, which PostgreSQL delivers when the transaction commits, and each
/// relay listens for it. Relays on several replicas never publish concurrently: one at a time
/// holds a PostgreSQL advisory lock, on a connection of its own, and publishes in commit order
/// (`FOR UPDATE SKIP LOCKED` on the events themselves would let two relays publish the events of
/// one order out of order). When that relay's process dies its connection closes, the server
/// releases the lock, and another relay takes over at its next look (a commit's notification or
/// the poll interval). If the lock's connection is lost while the relay lives (the server
/// restarted), the relay notices within a second and stops publishing; another may have taken
/// over meanwhile, so an event can go out twice then, with the same message id (an inbox skips
/// it).
///
/// Tables (``migrate()`` creates them when missing): `rabbitmq_inbox (consumer_group,
/// message_id, handled_at)` and `rabbitmq_outbox` (the events waiting, by `sequence`). Keep inbox records at least as long as a message can be redelivered;
/// ``pruneInbox(handledBefore:)`` drops older ones.
public final class PostgresEventStore: OutboxStore, Sendable {
    /// The connection pool; the application runs it (`client.run()`, or as a `Service`).
    public let client: PostgresClient
    let logger: Logger
    /// The channel `NOTIFY` wakes relays on.
    static let notificationChannel = "rabbitmq_outbox"
    /// Which relay of this process holds the outbox's advisory lock.
    let relayLock = RelayLock()

    /// A store on `client`'s database.
    public init(
        client: PostgresClient,
        logger: Logger = Logger(label: "swift-rabbitmq.postgres", factory: { _ in SwiftLogNoOpLogHandler() })
    ) {
        self.client = client
        self.logger = logger
    }

    /// A client configuration from `postgres://user:password@host:port/database` (TLS off: for
    /// TLS, build the configuration yourself).
    public static func configuration(url: String) throws -> PostgresClient.Configuration {
        guard let components = URLComponents(string: url), ["postgres", "postgresql"].contains(components.scheme ?? ""),
            let host = components.host, !host.isEmpty
        else {
            throw PostgresStoreError("not a postgres:// URL: \(url)")
        }
        let database = components.path.count > 1 ? String(components.path.dropFirst()) : nil
        return PostgresClient.Configuration(
            host: host, port: components.port ?? 5432, username: components.user ?? "postgres",
            password: components.password, database: database, tls: .disable)
    }

    /// Whether `text` is a URL ``configuration(url:)`` takes (`postgres://` or `postgresql://`):
    /// how a program tells a PostgreSQL database from a SQLite file path in one option.
    public static func isPostgresURL(_ text: String) -> Bool {
        text.hasPrefix("postgres://") || text.hasPrefix("postgresql://")
    }

    /// Whether the server answers a query: what a service's health check asks of its store.
    public func isReachable() async -> Bool {
        (try? await client.query("SELECT 1", logger: logger).collect().count) == 1
    }

    /// Creates the tables when missing (safe to run from several processes at once).
    public func migrate() async throws {
        try await transaction { connection in
            // One migration at a time across processes.
            try await connection.query("SELECT pg_advisory_xact_lock(7305119861)", logger: self.logger)
            try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS rabbitmq_inbox (
                    consumer_group TEXT NOT NULL, message_id TEXT NOT NULL,
                    handled_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (consumer_group, message_id))
                """, logger: self.logger)
            try await connection.query(
                "CREATE INDEX IF NOT EXISTS rabbitmq_inbox_handled_at ON rabbitmq_inbox (handled_at)", logger: self.logger)
            try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS rabbitmq_outbox (
                    sequence BIGSERIAL PRIMARY KEY, message_id TEXT NOT NULL, exchange TEXT NOT NULL,
                    routing_key TEXT NOT NULL, event_type TEXT NOT NULL, content_type TEXT NOT NULL,
                    partition_key TEXT, body BYTEA NOT NULL, created_at TIMESTAMPTZ NOT NULL)
                """, logger: self.logger)
        }
    }

    /// Runs `work` in a transaction on a connection of the pool: committed when it returns,
    /// rolled back when it throws (its error is rethrown as it is).
    @discardableResult
    public func transaction<Result: Sendable>(
        _ work: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        try await client.withConnection { connection in
            try await connection.query("BEGIN", logger: self.logger)
            let result: Result
            do {
                result = try await work(connection)
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: self.logger)
                throw error
            }
            try await connection.query("COMMIT", logger: self.logger)
            return result
        }
    }

    // MARK: - Inbox

    /// Runs `work` and records `messageID` for `consumerGroup` in one transaction, unless it is
    /// recorded already: then `work` does not run and the outcome is `.duplicate`. When `work`
    /// throws, nothing is recorded and nothing it wrote stays. Two deliveries of one id at once:
    /// the second waits for the first's transaction, then finds the record.
    public func once<Result: Sendable>(
        messageID: String, consumerGroup: String, _ work: (PostgresConnection) async throws -> Result
    ) async throws -> InboxOutcome<Result> {
        try await transaction { connection in
            let inserted = try await connection.query(
                """
                INSERT INTO rabbitmq_inbox (consumer_group, message_id) VALUES (\(consumerGroup), \(messageID))
                ON CONFLICT DO NOTHING RETURNING 1
                """, logger: logger
            ).collect()
            guard !inserted.isEmpty else { return .duplicate }
            return .handled(try await work(connection))
        }
    }

    /// ``once(messageID:consumerGroup:_:)`` for the event a handler got.
    ///
    /// - Throws: `MissingMessageID` when the message carries none, or what `work` throws.
    public func once<Result: Sendable>(
        _ context: EventContext, _ work: (PostgresConnection) async throws -> Result
    ) async throws -> InboxOutcome<Result> {
        guard let messageID = context.messageID, !messageID.isEmpty else { throw MissingMessageID() }
        return try await once(messageID: messageID, consumerGroup: context.consumerGroup, work)
    }

    /// Whether `messageID` is recorded for `consumerGroup`.
    public func inboxContains(_ messageID: String, consumerGroup: String) async throws -> Bool {
        let rows = try await client.query(
            "SELECT 1 FROM rabbitmq_inbox WHERE consumer_group = \(consumerGroup) AND message_id = \(messageID)",
            logger: logger
        ).collect()
        return !rows.isEmpty
    }

    /// Deletes inbox records older than `date`; returns how many.
    @discardableResult
    public func pruneInbox(handledBefore date: Date) async throws -> Int {
        let rows = try await client.query(
            "DELETE FROM rabbitmq_inbox WHERE handled_at < \(date) RETURNING 1", logger: logger
        ).collect()
        return rows.count
    }

    // MARK: - Outbox

    /// Writes `message` to the outbox in the caller's transaction (`connection` inside
    /// ``transaction(_:)`` or ``once(messageID:consumerGroup:_:)``): published once it commits,
    /// never if it rolls back.
    public func enqueue(_ message: OutboxMessage, on connection: PostgresConnection) async throws {
        // One round trip: the row, and the notification PostgreSQL delivers at commit to every
        // listening relay (repeated ones in a transaction are delivered once).
        try await connection.query(
            """
            WITH written AS (
                INSERT INTO rabbitmq_outbox
                    (message_id, exchange, routing_key, event_type, content_type, partition_key, body, created_at)
                VALUES (\(message.messageID), \(message.exchange), \(message.routingKey), \(message.eventType),
                    \(message.contentType), \(message.partitionKey), \(ByteBuffer(bytes: message.body)), \(message.createdAt))
                RETURNING 1)
            SELECT pg_notify(\(Self.notificationChannel), '') FROM written
            """, logger: logger)
    }

    /// Writes several messages to the outbox in the caller's transaction, in their order, in one
    /// statement: one round trip to the server instead of one per message (see
    /// ``enqueue(_:on:)``). Published once the transaction commits, never if it rolls back.
    public func enqueue(contentsOf messages: [OutboxMessage], on connection: PostgresConnection) async throws {
        guard messages.count > 1 else {
            if let message = messages.first { try await enqueue(message, on: connection) }
            return
        }
        // Arrays of each column, unnested in their order (WITH ORDINALITY, ORDER BY): rows reach
        // the INSERT sorted, so their sequence numbers follow the array. PostgresNIO has no array
        // of optionals: an absent partition key is an empty string with `false` beside it.
        let partitionKeys = messages.map { $0.partitionKey ?? "" }
        let hasPartitionKey = messages.map { $0.partitionKey != nil }
        try await connection.query(
            """
            WITH written AS (
                INSERT INTO rabbitmq_outbox
                    (message_id, exchange, routing_key, event_type, content_type, partition_key, body, created_at)
                SELECT message_id, exchange, routing_key, event_type, content_type,
                    CASE WHEN has_partition_key THEN partition_key END, body, created_at
                FROM unnest(
                    \(messages.map(\.messageID))::text[], \(messages.map(\.exchange))::text[],
                    \(messages.map(\.routingKey))::text[], \(messages.map(\.eventType))::text[],
                    \(messages.map(\.contentType))::text[], \(partitionKeys)::text[], \(hasPartitionKey)::bool[],
                    \(messages.map { ByteBuffer(bytes: $0.body) })::bytea[], \(messages.map(\.createdAt))::timestamptz[])
                    WITH ORDINALITY AS batch(message_id, exchange, routing_key, event_type, content_type, partition_key,
                        has_partition_key, body, created_at, position)
                ORDER BY position
                RETURNING 1)
            SELECT pg_notify(\(Self.notificationChannel), '') FROM written LIMIT 1
            """, logger: logger)
    }

    /// Writes `event` to the outbox in the caller's transaction, as `EventPublisher` would send
    /// it to `exchange` (see ``enqueue(_:on:)``).
    public func enqueue<Event: AMQPEvent>(
        _ event: Event, exchange: String, messageID: String = UUID().uuidString,
        codec: any EventCodec = JSONEventCodec(), on connection: PostgresConnection
    ) async throws {
        try await enqueue(OutboxMessage(event, exchange: exchange, messageID: messageID, codec: codec), on: connection)
    }

    /// Up to `limit` waiting events, if `owner` holds the relay lock (taking it when it is free).
    /// The lock is a PostgreSQL advisory lock held by a connection of its own for as long as the
    /// relay runs (`lease` plays no part): a relay whose process dies loses it the moment its
    /// connection closes, so another takes over at once.
    public func claimPending(owner: String, lease: Duration, limit: Int) async throws -> [OutboxMessage] {
        guard try await relayLock.hold(owner, client: client, logger: logger) else { return [] }  // another relay publishes
        return try await client.withConnection { connection in
            var messages: [OutboxMessage] = []
            let rows = try await connection.query(
                """
                SELECT sequence, message_id, exchange, routing_key, event_type, content_type, partition_key, body, created_at
                FROM rabbitmq_outbox ORDER BY sequence LIMIT \(limit)
                """, logger: logger)
            for try await (sequence, messageID, exchange, routingKey, eventType, contentType, partitionKey, body, createdAt)
                in rows.decode((Int64, String, String, String, String, String, String?, ByteBuffer, Date).self)
            {
                messages.append(
                    OutboxMessage(
                        sequence: sequence, messageID: messageID, exchange: exchange, routingKey: routingKey,
                        eventType: eventType, contentType: contentType, partitionKey: partitionKey,
                        body: Array(buffer: body), createdAt: createdAt))
            }
            return messages
        }
    }

    public func deletePublished(_ sequences: [Int64]) async throws {
        guard !sequences.isEmpty else { return }
        try await client.query("DELETE FROM rabbitmq_outbox WHERE sequence = ANY(\(sequences))", logger: logger)
    }

    public func releaseLease(owner: String) async throws {
        relayLock.release(owner)
    }

    /// Yields on every commit that wrote to the outbox, in any process (`LISTEN rabbitmq_outbox`
    /// on a connection of its own while the stream is consumed).
    public func outboxChanges() -> AsyncStream<Void> {
        let (changes, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let listening = Task { [client, logger] in
            // A lost listening connection is listened again; the relay's poll covers the gap.
            while !Task.isCancelled {
                do {
                    try await client.withConnection { connection in
                        try await connection.listen(on: Self.notificationChannel) { notifications in
                            for try await _ in notifications { continuation.yield() }
                        }
                    }
                } catch {
                    logger.debug("outbox notifications interrupted", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: .seconds(1))
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in listening.cancel() }
        return changes
    }

    public func outboxBacklog() async throws -> OutboxBacklog {
        let row = try await client.query(
            "SELECT COUNT(*), MIN(created_at) FROM rabbitmq_outbox", logger: logger
        ).collect().first
        guard let (count, oldest) = try row?.decode((Int64, Date?).self) else { return OutboxBacklog(count: 0, oldest: nil) }
        return OutboxBacklog(count: Int(count), oldest: oldest)
    }

    /// Events waiting in the outbox.
    public func outboxDepth() async throws -> Int {
        try await outboxBacklog().count
    }

    /// Whether no event waits (cheaper than counting them).
    public func outboxIsEmpty() async throws -> Bool {
        try await client.query("SELECT NOT EXISTS (SELECT 1 FROM rabbitmq_outbox)", logger: logger)
            .collect().first?.decode(Bool.self) ?? true
    }
}

/// A PostgreSQL store's own error (its configuration).
public struct PostgresStoreError: Error, CustomStringConvertible {
    /// What is wrong.
    public let description: String

    init(_ description: String) {
        self.description = description
    }
}
