import Foundation
import GRDB
import OrderEvents
import RabbitMQEvents
import RabbitMQEventsSQLite

/// The service's orders in SQLite, beside the event store's inbox and outbox in the same file:
/// every change to an order and the event announcing it commit in one transaction (the
/// transactional outbox), and every inventory answer commits with its inbox record.
///
/// `orders(order_id, customer_id, status, items, reason, created_at, updated_at)`, `items` as JSON.
struct SQLiteOrders: OrderStore {
    let store: SQLiteEventStore
    /// Where the service's events go.
    let exchange: String

    var outbox: any OutboxStore { store }

    func isHealthy() async -> Bool { await store.isReachable() }

    func prepare() async throws {
        try await store.database.write { db in
            try db.execute(
                sql: """
                    CREATE TABLE IF NOT EXISTS orders (
                        order_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, status TEXT NOT NULL,
                        items TEXT NOT NULL, reason TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)
                    """)
        }
    }

    func place(customerID: String, items: [OrderItem]) async throws -> String {
        let orderID = newOrderID()
        let event = OrderCreated(orderID: orderID, customerID: customerID, items: items)
        let itemsJSON = String(decoding: try JSONEncoder().encode(items), as: UTF8.self)
        try await store.database.write { [store, exchange] db in
            let now = Self.now
            try db.execute(
                sql: "INSERT INTO orders VALUES (?, ?, ?, ?, NULL, ?, ?)",
                arguments: [orderID, customerID, OrderStatus.pending.rawValue, itemsJSON, now, now])
            try store.enqueue(event, exchange: exchange, messageID: "\(orderID)-created", in: db)
        }
        return orderID
    }

    func cancel(_ orderID: String, reason: String) async throws -> CancelOutcome {
        try await store.database.write { [store, exchange] db in
            guard let order = try Self.find(orderID, db) else { return .notFound }
            guard order.status == .pending || order.status == .confirmed else { return .conflict(order.status) }
            try Self.setStatus(.cancelled, of: orderID, reason: nil, db)
            try store.enqueue(
                OrderCancelled(orderID: orderID, items: order.items, reason: reason), exchange: exchange,
                messageID: "\(orderID)-cancelled", in: db)
            return .cancelled
        }
    }

    func view(_ orderID: String) async throws -> OrderView? {
        try await store.database.read { try Self.find(orderID, $0) }
    }

    func apply(_ reserved: InventoryReserved, _ context: EventContext) async throws -> InboxOutcome<OrderStatus?> {
        try await store.once(context) { db in try Self.apply(reserved, db) }
    }

    func apply(_ rejected: InventoryRejected, _ context: EventContext) async throws -> InboxOutcome<OrderStatus?> {
        try await store.once(context) { db in try Self.apply(rejected, db) }
    }

    private static func apply(_ reserved: InventoryReserved, _ db: Database) throws -> OrderStatus? {
        guard let order = try find(reserved.orderID, db) else { return nil }
        guard order.status == .pending else { return order.status }
        try setStatus(.confirmed, of: reserved.orderID, reason: nil, db)
        return .confirmed
    }

    private static func apply(_ rejected: InventoryRejected, _ db: Database) throws -> OrderStatus? {
        guard let order = try find(rejected.orderID, db) else { return nil }
        guard order.status == .pending else { return order.status }
        try setStatus(.rejected, of: rejected.orderID, reason: rejected.reason, db)
        return .rejected
    }

    func countsByStatus() async throws -> [OrderStatus: Int] {
        try await store.database.read { db in
            var counts: [OrderStatus: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT status, COUNT(*) AS count FROM orders GROUP BY status") {
                if let status = OrderStatus(rawValue: row["status"]) { counts[status] = row["count"] }
            }
            return counts
        }
    }

    private static func find(_ orderID: String, _ db: Database) throws -> OrderView? {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM orders WHERE order_id = ?", arguments: [orderID]) else {
            return nil
        }
        let items = try JSONDecoder().decode([OrderItem].self, from: Data((row["items"] as String).utf8))
        return OrderView(
            orderId: row["order_id"], status: OrderStatus(rawValue: row["status"]) ?? .pending, items: items,
            reason: row["reason"])
    }

    private static func setStatus(_ status: OrderStatus, of orderID: String, reason: String?, _ db: Database) throws {
        try db.execute(
            sql: "UPDATE orders SET status = ?, reason = ?, updated_at = ? WHERE order_id = ?",
            arguments: [status.rawValue, reason, now, orderID])
    }

    /// Milliseconds since 1970.
    private static var now: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}
