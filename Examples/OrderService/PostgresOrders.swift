import Foundation
import Logging
import OrderEvents
import PostgresNIO
import RabbitMQEvents
import RabbitMQEventsPostgres

/// The service's orders in PostgreSQL, beside the store's inbox and outbox in the same database:
/// the same rules as ``SQLiteOrders``, for replicas of the service on several machines. A
/// cancellation locks its order's row (`FOR UPDATE`), so two replicas cancelling one order at
/// once write one `OrderCancelled`.
///
/// `orders(order_id, customer_id, status, items, reason, created_at, updated_at)`, `items` as JSON.
struct PostgresOrders: OrderStore {
    let store: PostgresEventStore
    /// Where the service's events go.
    let exchange: String
    let logger: Logger

    var outbox: any OutboxStore { store }

    func isHealthy() async -> Bool { await store.isReachable() }

    func prepare() async throws {
        try await store.migrate()
        try await store.transaction { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(7305119862)", logger: logger)
            try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS orders (
                    order_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, status TEXT NOT NULL,
                    items TEXT NOT NULL, reason TEXT, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)
                """, logger: logger)
        }
    }

    func place(customerID: String, items: [OrderItem]) async throws -> String {
        let orderID = newOrderID()
        let event = OrderCreated(orderID: orderID, customerID: customerID, items: items)
        let itemsJSON = String(decoding: try JSONEncoder().encode(items), as: UTF8.self)
        try await store.transaction { connection in
            let now = Self.now
            try await connection.query(
                """
                INSERT INTO orders VALUES (\(orderID), \(customerID), \(OrderStatus.pending.rawValue), \(itemsJSON),
                    NULL, \(now), \(now))
                """, logger: logger)
            try await store.enqueue(event, exchange: exchange, messageID: "\(orderID)-created", on: connection)
        }
        return orderID
    }

    func cancel(_ orderID: String, reason: String) async throws -> CancelOutcome {
        try await store.transaction { connection in
            guard let order = try await Self.find(orderID, lock: true, connection, logger) else { return .notFound }
            guard order.status == .pending || order.status == .confirmed else { return .conflict(order.status) }
            try await Self.setStatus(.cancelled, of: orderID, reason: nil, connection, logger)
            try await store.enqueue(
                OrderCancelled(orderID: orderID, items: order.items, reason: reason), exchange: exchange,
                messageID: "\(orderID)-cancelled", on: connection)
            return .cancelled
        }
    }

    func view(_ orderID: String) async throws -> OrderView? {
        try await store.client.withConnection { try await Self.find(orderID, lock: false, $0, logger) }
    }

    func apply(_ reserved: InventoryReserved, _ context: EventContext) async throws -> InboxOutcome<OrderStatus?> {
        try await store.once(context) { connection in
            try await Self.settle(reserved.orderID, as: .confirmed, reason: nil, connection, logger)
        }
    }

    func apply(_ rejected: InventoryRejected, _ context: EventContext) async throws -> InboxOutcome<OrderStatus?> {
        try await store.once(context) { connection in
            try await Self.settle(rejected.orderID, as: .rejected, reason: rejected.reason, connection, logger)
        }
    }

    func countsByStatus() async throws -> [OrderStatus: Int] {
        var counts: [OrderStatus: Int] = [:]
        let rows = try await store.client.query("SELECT status, COUNT(*) FROM orders GROUP BY status", logger: logger)
        for try await (status, count) in rows.decode((String, Int64).self) {
            if let status = OrderStatus(rawValue: status) { counts[status] = Int(count) }
        }
        return counts
    }

    /// A `PENDING` order takes the inventory's answer; any other keeps its status.
    private static func settle(
        _ orderID: String, as status: OrderStatus, reason: String?, _ connection: PostgresConnection, _ logger: Logger
    ) async throws -> OrderStatus? {
        guard let order = try await find(orderID, lock: true, connection, logger) else { return nil }
        guard order.status == .pending else { return order.status }
        try await setStatus(status, of: orderID, reason: reason, connection, logger)
        return status
    }

    private static func find(
        _ orderID: String, lock: Bool, _ connection: PostgresConnection, _ logger: Logger
    ) async throws -> OrderView? {
        let rows = try await connection.query(
            "SELECT order_id, status, items, reason FROM orders WHERE order_id = \(orderID) \(unescaped: lock ? "FOR UPDATE" : "")",
            logger: logger)
        for try await (id, status, items, reason) in rows.decode((String, String, String, String?).self) {
            return OrderView(
                orderId: id, status: OrderStatus(rawValue: status) ?? .pending,
                items: try JSONDecoder().decode([OrderItem].self, from: Data(items.utf8)), reason: reason)
        }
        return nil
    }

    private static func setStatus(
        _ status: OrderStatus, of orderID: String, reason: String?, _ connection: PostgresConnection, _ logger: Logger
    ) async throws {
        try await connection.query(
            "UPDATE orders SET status = \(status.rawValue), reason = \(reason), updated_at = \(now) WHERE order_id = \(orderID)",
            logger: logger)
    }

    /// Milliseconds since 1970.
    private static var now: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}
