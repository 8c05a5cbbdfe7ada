import Foundation
import Logging
import OrderEvents
import PostgresNIO
import RabbitMQEvents
import RabbitMQEventsPostgres

/// The inventory in PostgreSQL: ``Inventory``'s rules for replicas on several machines. An order
/// event locks its order's row and the stock rows of its SKUs (in SKU order, so two replicas
/// never deadlock) before deciding, so concurrent reservations of one SKU never oversell.
struct PostgresInventory: InventoryStore {
    let store: PostgresEventStore
    let logger: Logger

    var outbox: any OutboxStore { store }

    func prepare(initialStock: [String: Int]) async throws {
        try await store.migrate()
        try await store.transaction { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(7305119863)", logger: logger)
            let isNew = try await connection.query("SELECT to_regclass('stock') IS NULL", logger: logger)
                .collect().first?.decode(Bool.self) ?? true
            try await connection.query(
                "CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, available INTEGER, reserved INTEGER NOT NULL DEFAULT 0)",
                logger: logger)
            try await connection.query(
                "CREATE TABLE IF NOT EXISTS orders (order_id TEXT PRIMARY KEY, status TEXT NOT NULL)", logger: logger)
            try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS stock_movements (
                    id BIGSERIAL PRIMARY KEY, message_id TEXT NOT NULL, event_type TEXT NOT NULL,
                    order_id TEXT NOT NULL, sku TEXT NOT NULL, quantity INTEGER NOT NULL)
                """, logger: logger)
            guard isNew else { return }
            for (sku, available) in initialStock {
                try await connection.query("INSERT INTO stock (sku, available) VALUES (\(sku), \(available))", logger: logger)
            }
        }
    }

    func apply(_ order: OrderCreated, _ context: EventContext, answerTo exchange: String?) async throws -> InboxOutcome<Inventory.Effect> {
        let messageID = context.messageID ?? ""
        return try await store.once(context) { connection in
            let effect = try await reserve(order, messageID: messageID, connection)
            if let exchange, let (answer, answerID) = effect.answer(to: order) {
                try await store.enqueue(OutboxMessage(answer, exchange: exchange, messageID: answerID), on: connection)
            }
            return effect
        }
    }

    func apply(_ cancellation: OrderCancelled, _ context: EventContext) async throws -> InboxOutcome<Inventory.Effect> {
        let messageID = context.messageID ?? ""
        return try await store.once(context) { connection in
            let orderID = cancellation.orderID
            switch try await status(of: orderID, connection) {
            case nil:
                try await connection.query("INSERT INTO orders VALUES (\(orderID), 'CANCELLED')", logger: logger)
                return .tombstoned
            case "RESERVED":
                // What was reserved, from the ledger (the cancellation's own items could differ).
                let rows = try await connection.query(
                    "SELECT sku, SUM(quantity)::INTEGER FROM stock_movements WHERE order_id = \(orderID) GROUP BY sku ORDER BY sku",
                    logger: logger)
                var reserved: [(String, Int)] = []
                for try await (sku, quantity) in rows.decode((String, Int).self) { reserved.append((sku, quantity)) }
                for (sku, quantity) in reserved {
                    try await move(sku, by: -quantity, order: orderID, event: OrderCancelled.eventType, messageID, connection)
                }
                try await connection.query("UPDATE orders SET status = 'CANCELLED' WHERE order_id = \(orderID)", logger: logger)
                return .released
            case "REJECTED":
                try await connection.query("UPDATE orders SET status = 'CANCELLED' WHERE order_id = \(orderID)", logger: logger)
                return .ignored
            default:
                return .ignored
            }
        }
    }

    private func reserve(_ order: OrderCreated, messageID: String, _ connection: PostgresConnection) async throws -> Inventory.Effect {
        if try await status(of: order.orderID, connection) != nil { return .ignored }
        let skus = Array(Set(order.items.map(\.sku))).sorted()
        var available: [String: Int?] = [:]
        let rows = try await connection.query(
            "SELECT sku, available FROM stock WHERE sku = ANY(\(skus)) ORDER BY sku FOR UPDATE", logger: logger)
        for try await (sku, units) in rows.decode((String, Int?).self) { available[sku] = units }
        for item in order.items {
            if let limit = available[item.sku] ?? nil, limit < item.quantity {
                try await connection.query("INSERT INTO orders VALUES (\(order.orderID), 'REJECTED')", logger: logger)
                return .rejected(reason: "\(item.sku): \(item.quantity) wanted, \(limit) available")
            }
        }
        for item in order.items.sorted(by: { $0.sku < $1.sku }) {
            try await move(item.sku, by: item.quantity, order: order.orderID, event: OrderCreated.eventType, messageID, connection)
        }
        try await connection.query("INSERT INTO orders VALUES (\(order.orderID), 'RESERVED')", logger: logger)
        return .reserved
    }

    /// The order's status, its row locked for the rest of the transaction.
    private func status(of orderID: String, _ connection: PostgresConnection) async throws -> String? {
        try await connection.query("SELECT status FROM orders WHERE order_id = \(orderID) FOR UPDATE", logger: logger)
            .collect().first?.decode(String.self)
    }

    private func move(
        _ sku: String, by quantity: Int, order: String, event: String, _ messageID: String, _ connection: PostgresConnection
    ) async throws {
        try await connection.query(
            """
            INSERT INTO stock (sku, available, reserved) VALUES (\(sku), NULL, \(quantity))
            ON CONFLICT (sku) DO UPDATE SET reserved = stock.reserved + excluded.reserved,
                available = stock.available - excluded.reserved
            """, logger: logger)
        try await connection.query(
            """
            INSERT INTO stock_movements (message_id, event_type, order_id, sku, quantity)
            VALUES (\(messageID), \(event), \(order), \(sku), \(quantity))
            """, logger: logger)
    }

    func totalReserved() async throws -> Int {
        try await store.client.query("SELECT COALESCE(SUM(reserved), 0)::INTEGER FROM stock", logger: logger)
            .collect().first?.decode(Int.self) ?? 0
    }

    func isHealthy() async -> Bool { await store.isReachable() }
}
