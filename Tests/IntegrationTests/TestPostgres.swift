import Foundation
import GRDB
import Logging
import PostgresNIO
import RabbitMQEventsPostgres

/// The PostgreSQL server the PostgreSQL store tests run against (`POSTGRES_URL`, set by
/// `scripts/postgres env`; `scripts/test` starts one). Like the broker, it must be there when
/// `CI` or `AMQP_REQUIRE_BROKER` is set: the tests then fail rather than skip.
enum TestPostgres {
    static let url =
        ProcessInfo.processInfo.environment["POSTGRES_URL"] ?? "postgres://postgres@127.0.0.1:55432/postgres"

    static let reachableOrRequired: Bool = {
        if TestBroker.isRequired { return true }
        guard let configuration = URLComponents(string: url), let host = configuration.host else { return false }
        return TCPProbe.canConnect(host: host, port: configuration.port ?? 5432)
    }()

    static let logger = Logger(label: "test-postgres", factory: { _ in SwiftLogNoOpLogHandler() })

    /// A database of the test's own (created, then dropped afterwards): its URL.
    static func withDatabase<Result>(_ body: (String) async throws -> Result) async throws -> Result {
        let name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        try await admin { try await $0.query("CREATE DATABASE \(unescaped: name)", logger: logger) }
        var components = URLComponents(string: url)!
        components.path = "/" + name
        do {
            let result = try await body(components.string!)
            try await drop(name)
            return result
        } catch {
            try? await drop(name)
            throw error
        }
    }

    private static func drop(_ name: String) async throws {
        try await admin { try await $0.query("DROP DATABASE IF EXISTS \(unescaped: name) WITH (FORCE)", logger: logger) }
    }

    /// Runs `body` with a client on the server's default database.
    private static func admin(_ body: @escaping @Sendable (PostgresClient) async throws -> Void) async throws {
        try await withClient(url: url) { client in try await body(client) }
    }

    /// A running client on `url` for `body`'s duration.
    static func withClient<Result: Sendable>(
        url: String, _ body: @Sendable (PostgresClient) async throws -> Result
    ) async throws -> Result {
        let client = PostgresClient(configuration: try PostgresEventStore.configuration(url: url), backgroundLogger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            return try await body(client)
        }
    }

    /// Ends the sessions holding the outbox relay's lock (`RelayLock.key`) in `url`'s database,
    /// as the server does when the process of a relay dies.
    static func terminateRelayLockHolders(url: String) async throws {
        try await withClient(url: url) { client in
            // An advisory lock on a bigint key: classid holds its high 32 bits, objid the low.
            _ = try await client.query(
                """
                SELECT pg_terminate_backend(pid) FROM pg_locks
                WHERE locktype = 'advisory' AND granted AND objsubid = 1
                  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                  AND classid::bigint = \(RelayLock.key >> 32) AND objid::bigint = \(RelayLock.key & 0xFFFF_FFFF)
                """, logger: logger
            ).collect()
        }
    }

    /// Who holds an advisory lock in `url`'s database, one line per session (process id,
    /// state, client port, when it started, its last query): what a failed lock handover prints.
    static func advisoryLockHolders(url: String) async throws -> [String] {
        try await withClient(url: url) { client in
            let rows = try await client.query(
                """
                SELECT l.pid, COALESCE(a.state, '?'), COALESCE(a.client_port, 0), COALESCE(CAST(a.backend_start AS TEXT), '?'),
                       COALESCE(a.query, '?'), l.granted
                FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                """, logger: logger)
            var holders: [String] = []
            for try await (pid, state, port, started, query, granted) in rows.decode((Int32, String, Int32, String, String, Bool).self) {
                holders.append("pid \(pid) \(granted ? "holds" : "waits") (\(state), client port \(port), since \(started)): \(query)")
            }
            return holders
        }
    }

    /// A migrated store on `url` for `body`'s duration.
    static func withStore<Result: Sendable>(
        url: String, _ body: @Sendable (PostgresEventStore) async throws -> Result
    ) async throws -> Result {
        try await withClient(url: url) { client in
            let store = PostgresEventStore(client: client)
            try await store.migrate()
            return try await body(store)
        }
    }
}

/// A service's database as a test reads it: a SQLite file or a PostgreSQL database (with a
/// running client), queried with SQL both understand.
enum ServiceDatabase: Sendable {
    case sqlite(path: String)
    case postgres(url: String, client: PostgresClient)

    /// "SQLite" or "PostgreSQL", for the figures.
    var kind: String {
        switch self {
        case .sqlite: "SQLite"
        case .postgres: "PostgreSQL"
        }
    }

    /// What the service's `--database` option takes.
    var argument: String {
        switch self {
        case .sqlite(let path): path
        case .postgres(let url, _): url
        }
    }

    /// The first column of the first row, as an integer.
    func integer(_ sql: String) async throws -> Int {
        try await rows(sql).first?.first.flatMap { $0.flatMap { Int($0) } } ?? 0
    }

    /// Every row, each column as text (`CAST(... AS TEXT)` where a column is not text already).
    func rows(_ sql: String) async throws -> [[String?]] {
        switch self {
        case .sqlite(let path):
            return try await DatabaseQueue(path: path).read { db in
                try Row.fetchAll(db, sql: sql).map { row in row.databaseValues.map { String.fromDatabaseValue($0) ?? ($0.isNull ? nil : "\($0)") } }
            }
        case .postgres(_, let client):
            var result: [[String?]] = []
            for try await row in try await client.query(PostgresQuery(unsafeSQL: sql), logger: TestPostgres.logger) {
                result.append(row.map { cell in
                    guard cell.bytes != nil else { return nil }
                    if cell.dataType == .int8 || cell.dataType == .int4 || cell.dataType == .int2 || cell.dataType == .numeric {
                        return (try? cell.decode(Int.self)).map { String($0) } ?? (try? cell.decode(String.self))
                    }
                    if let text = try? cell.decode(String.self) { return text }
                    return (try? cell.decode(Bool.self)).map { String($0) }
                })
            }
            return result
        }
    }

    /// Runs `body` with two new databases of `kind` ("sqlite" or "postgres"), one per service.
    static func withTwo(
        _ kind: String, in folder: URL, _ body: @Sendable (ServiceDatabase, ServiceDatabase) async throws -> Void
    ) async throws {
        if kind == "sqlite" {
            try await body(
                .sqlite(path: folder.appendingPathComponent("orders.sqlite").path),
                .sqlite(path: folder.appendingPathComponent("inventory.sqlite").path))
            return
        }
        try await TestPostgres.withDatabase { ordersURL in
            try await TestPostgres.withDatabase { inventoryURL in
                try await TestPostgres.withClient(url: ordersURL) { ordersClient in
                    try await TestPostgres.withClient(url: inventoryURL) { inventoryClient in
                        try await body(
                            .postgres(url: ordersURL, client: ordersClient), .postgres(url: inventoryURL, client: inventoryClient))
                    }
                }
            }
        }
    }
}
