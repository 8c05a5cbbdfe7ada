import Foundation
import GRDB
import OrderEvents
import RabbitMQEvents
import RabbitMQEventsSQLite

/// Where the daemon keeps stock, orders and the stock ledger, with the inbox and the outbox in
/// the same database: SQLite (``SQLiteInventory``, replicas on one machine) or PostgreSQL
/// (``PostgresInventory``, replicas anywhere). Each event's effect, its inbox record and its
/// answer (`InventoryReserved` / `InventoryRejected`, when `answers` names an exchange) commit
/// in one transaction.
protocol InventoryStore: Sendable {
    /// Creates the tables when missing and, on a new database, applies the initial stock.
    func prepare(initialStock: [String: Int]) async throws
    /// `OrderCreated`, once: reserves every item if all are in stock, otherwise rejects the order.
    func apply(_ order: OrderCreated, _ context: EventContext, answerTo exchange: String?) async throws -> InboxOutcome<Inventory.Effect>
    /// `OrderCancelled`, once: releases what the order reserved; before its order, a tombstone.
    func apply(_ cancellation: OrderCancelled, _ context: EventContext) async throws -> InboxOutcome<Inventory.Effect>
    /// Units reserved in all.
    func totalReserved() async throws -> Int
    /// Whether the database answers (for `/health`).
    func isHealthy() async -> Bool
    /// The outbox the relay publishes the answers from.
    var outbox: any OutboxStore { get }
}

extension Inventory.Effect {
    /// The answer an `OrderCreated` with this effect gets, if any.
    func answer(to order: OrderCreated) -> (any AMQPEvent, messageID: String)? {
        switch self {
        case .reserved: (InventoryReserved(orderID: order.orderID, items: order.items), "\(order.orderID)-reserved")
        case .rejected(let reason): (InventoryRejected(orderID: order.orderID, reason: reason), "\(order.orderID)-rejected")
        case .released, .tombstoned, .ignored: nil
        }
    }
}

/// The inventory in SQLite (``Inventory``'s rules, through GRDB).
struct SQLiteInventory: InventoryStore {
    let store: SQLiteEventStore

    var outbox: any OutboxStore { store }

    func prepare(initialStock: [String: Int]) async throws {
        try await store.database.write { try Inventory.prepare($0, initialStock: initialStock) }
    }

    func apply(_ order: OrderCreated, _ context: EventContext, answerTo exchange: String?) async throws -> InboxOutcome<Inventory.Effect> {
        let messageID = context.messageID ?? ""
        return try await store.once(context) { [store] db in
            let effect = try Inventory.apply(order, messageID: messageID, db)
            if let exchange, let (answer, answerID) = effect.answer(to: order) {
                try store.enqueue(OutboxMessage(answer, exchange: exchange, messageID: answerID), in: db)
            }
            return effect
        }
    }

    func apply(_ cancellation: OrderCancelled, _ context: EventContext) async throws -> InboxOutcome<Inventory.Effect> {
        let messageID = context.messageID ?? ""
        return try await store.once(context) { db in try Inventory.apply(cancellation, messageID: messageID, db) }
    }

    func totalReserved() async throws -> Int {
        try await store.database.read(Inventory.totalReserved)
    }

    func isHealthy() async -> Bool { await store.isReachable() }
}
