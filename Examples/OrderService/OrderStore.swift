import Foundation
import OrderEvents
import RabbitMQEvents

/// An order's life: `PENDING` when placed, then `CONFIRMED` or `REJECTED` by the inventory's
/// answer, or `CANCELLED` by the customer.
enum OrderStatus: String, Codable, Sendable {
    case pending = "PENDING"
    case confirmed = "CONFIRMED"
    case rejected = "REJECTED"
    case cancelled = "CANCELLED"
}

/// An order as `GET /orders/{id}` shows it.
struct OrderView: Codable, Sendable, Equatable {
    var orderId: String
    var status: OrderStatus
    var items: [OrderItem]
    /// Why the inventory rejected it.
    var reason: String?
}

/// What `POST /orders/{id}/cancel` did.
enum CancelOutcome: Equatable {
    case cancelled
    case notFound
    /// Already cancelled or rejected: nothing to cancel.
    case conflict(OrderStatus)
}

/// Where the order service keeps its orders, with the inbox and the outbox in the same database:
/// SQLite (``SQLiteOrders``, one machine) or PostgreSQL (``PostgresOrders``, replicas anywhere).
///
/// Every change to an order commits with the event announcing it (the transactional outbox);
/// every inventory answer commits with its inbox record (handled once).
protocol OrderStore: Sendable {
    /// Creates the tables when missing.
    func prepare() async throws
    /// Stores a new `PENDING` order and its `OrderCreated` in one transaction; returns its id.
    func place(customerID: String, items: [OrderItem]) async throws -> String
    /// Cancels a `PENDING` or `CONFIRMED` order and writes its `OrderCancelled` (the inventory
    /// releases what it reserved), in one transaction.
    func cancel(_ orderID: String, reason: String) async throws -> CancelOutcome
    /// The order, if there is one with this id.
    func view(_ orderID: String) async throws -> OrderView?
    /// `InventoryReserved`, once: a `PENDING` order is `CONFIRMED` (a cancelled one stays
    /// cancelled: its `OrderCancelled` follows the reservation at the inventory and releases it).
    /// The status after it (nil for an unknown order).
    func apply(_ reserved: InventoryReserved, _ context: EventContext) async throws -> InboxOutcome<OrderStatus?>
    /// `InventoryRejected`, once: a `PENDING` order is `REJECTED`, with the inventory's reason.
    func apply(_ rejected: InventoryRejected, _ context: EventContext) async throws -> InboxOutcome<OrderStatus?>
    /// Orders per status.
    func countsByStatus() async throws -> [OrderStatus: Int]
    /// Whether the database answers (for `/health`).
    func isHealthy() async -> Bool
    /// The outbox the relay publishes from.
    var outbox: any OutboxStore { get }
}

/// A new order's id.
func newOrderID() -> String {
    "ord-" + UUID().uuidString.lowercased()
}
