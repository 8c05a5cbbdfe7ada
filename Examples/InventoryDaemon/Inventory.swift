import Foundation
import GRDB
import OrderEvents

/// The daemon's stock and orders, in SQLite: what each order event does to them, written so that
/// events arriving twice or out of order change nothing they should not.
///
/// - `stock(sku, available, reserved)`: `available` is `NULL` for a SKU with no stock limit.
/// - `orders(order_id, status)`: `RESERVED`, `REJECTED`, or `CANCELLED`. A cancellation that
///   arrives before its order leaves a `CANCELLED` tombstone, and the order, when it comes,
///   reserves nothing.
/// - `stock_movements`: one row per SKU each applied event moved (reservations positive, releases
///   negative), in the order they were applied: the ledger the stock is the sum of.
enum Inventory {
    /// What an order event did.
    enum Effect: Sendable, Equatable {
        case reserved
        /// Not every item was in stock; why.
        case rejected(reason: String)
        case released, tombstoned, ignored

        /// One word for logs.
        var name: String {
            switch self {
            case .reserved: "reserved"
            case .rejected: "rejected"
            case .released: "released"
            case .tombstoned: "tombstoned"
            case .ignored: "ignored"
            }
        }
    }

    /// Creates the tables when missing and, on a new database, applies the initial stock.
    static func prepare(_ db: Database, initialStock: [String: Int]) throws {
        let isNew = try !db.tableExists("stock")
        try db.execute(
            sql: """
                CREATE TABLE IF NOT EXISTS stock (
                    sku TEXT PRIMARY KEY, available INTEGER, reserved INTEGER NOT NULL DEFAULT 0);
                CREATE TABLE IF NOT EXISTS orders (order_id TEXT PRIMARY KEY, status TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS stock_movements (
                    id INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL, event_type TEXT NOT NULL,
                    order_id TEXT NOT NULL, sku TEXT NOT NULL, quantity INTEGER NOT NULL);
                """)
        guard isNew else { return }
        for (sku, available) in initialStock {
            try db.execute(sql: "INSERT INTO stock (sku, available) VALUES (?, ?)", arguments: [sku, available])
        }
    }

    /// `OrderCreated`: reserves every item if all are in stock, otherwise rejects the order; an
    /// order already known (a tombstone, or seen before) is left as it is.
    static func apply(_ order: OrderCreated, messageID: String, _ db: Database) throws -> Effect {
        if try String.fetchOne(db, sql: "SELECT status FROM orders WHERE order_id = ?", arguments: [order.orderID]) != nil {
            return .ignored
        }
        for item in order.items {
            let available = try Int?.fetchOne(db, sql: "SELECT available FROM stock WHERE sku = ?", arguments: [item.sku])
            if let available = available ?? nil, available < item.quantity {
                try db.execute(sql: "INSERT INTO orders VALUES (?, 'REJECTED')", arguments: [order.orderID])
                return .rejected(reason: "\(item.sku): \(item.quantity) wanted, \(available) available")
            }
        }
        for item in order.items {
            try move(item, by: item.quantity, order: order.orderID, event: OrderCreated.eventType, messageID, db)
        }
        try db.execute(sql: "INSERT INTO orders VALUES (?, 'RESERVED')", arguments: [order.orderID])
        return .reserved
    }

    /// `OrderCancelled`: releases what the order reserved; before its order, leaves a tombstone.
    static func apply(_ cancellation: OrderCancelled, messageID: String, _ db: Database) throws -> Effect {
        let status = try String.fetchOne(
            db, sql: "SELECT status FROM orders WHERE order_id = ?", arguments: [cancellation.orderID])
        switch status {
        case nil:
            try db.execute(sql: "INSERT INTO orders VALUES (?, 'CANCELLED')", arguments: [cancellation.orderID])
            return .tombstoned
        case "RESERVED":
            // What was reserved, from the ledger (the cancellation's own items could differ).
            let rows = try Row.fetchAll(
                db, sql: "SELECT sku, SUM(quantity) AS quantity FROM stock_movements WHERE order_id = ? GROUP BY sku",
                arguments: [cancellation.orderID])
            for row in rows {
                let item = OrderItem(sku: row["sku"], quantity: row["quantity"], price: 0)
                try move(item, by: -item.quantity, order: cancellation.orderID, event: OrderCancelled.eventType, messageID, db)
            }
            try db.execute(sql: "UPDATE orders SET status = 'CANCELLED' WHERE order_id = ?", arguments: [cancellation.orderID])
            return .released
        case "REJECTED":
            try db.execute(sql: "UPDATE orders SET status = 'CANCELLED' WHERE order_id = ?", arguments: [cancellation.orderID])
            return .ignored
        default:
            return .ignored
        }
    }

    private static func move(
        _ item: OrderItem, by quantity: Int, order: String, event: String, _ messageID: String, _ db: Database
    ) throws {
        try db.execute(
            sql: """
                INSERT INTO stock (sku, available, reserved) VALUES (?, NULL, ?)
                ON CONFLICT (sku) DO UPDATE SET reserved = reserved + excluded.reserved,
                    available = available - excluded.reserved
                """,
            arguments: [item.sku, quantity])
        try db.execute(
            sql: "INSERT INTO stock_movements (message_id, event_type, order_id, sku, quantity) VALUES (?, ?, ?, ?, ?)",
            arguments: [messageID, event, order, item.sku, quantity])
    }

    /// Units reserved in all.
    static func totalReserved(_ db: Database) throws -> Int {
        try Int.fetchOne(db, sql: "SELECT COALESCE(SUM(reserved), 0) FROM stock") ?? 0
    }
}
