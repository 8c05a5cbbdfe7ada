import Foundation
import RabbitMQEvents

/// One line of an order.
public struct OrderItem: Codable, Sendable, Hashable {
    public var sku: String
    public var quantity: Int
    public var price: Double

    public init(sku: String, quantity: Int, price: Double) {
        self.sku = sku
        self.quantity = quantity
        self.price = price
    }
}

/// A customer placed an order: `order.created`, partitioned by order id.
public struct OrderCreated: AMQPEvent, Hashable {
    public static let eventType = "OrderCreated"
    public static let routingKey = "order.created"

    public var orderID: String
    public var customerID: String
    public var items: [OrderItem]
    public var createdAt: Date

    /// Events of one order are handled in order.
    public var partitionKey: String? { orderID }

    public init(orderID: String, customerID: String, items: [OrderItem], createdAt: Date = Date()) {
        self.orderID = orderID
        self.customerID = customerID
        self.items = items
        self.createdAt = createdAt
    }
}

/// A customer cancelled an order: `order.cancelled`, partitioned by order id.
public struct OrderCancelled: AMQPEvent, Hashable {
    public static let eventType = "OrderCancelled"
    public static let routingKey = "order.cancelled"

    public var orderID: String
    public var items: [OrderItem]
    public var reason: String

    /// Events of one order are handled in order.
    public var partitionKey: String? { orderID }

    public init(orderID: String, items: [OrderItem], reason: String) {
        self.orderID = orderID
        self.items = items
        self.reason = reason
    }
}

/// The inventory set stock aside for an order: `inventory.reserved`, partitioned by order id.
public struct InventoryReserved: AMQPEvent, Hashable {
    public static let eventType = "InventoryReserved"
    public static let routingKey = "inventory.reserved"

    public var orderID: String
    public var items: [OrderItem]

    /// Events of one order are handled in order.
    public var partitionKey: String? { orderID }

    public init(orderID: String, items: [OrderItem]) {
        self.orderID = orderID
        self.items = items
    }
}

/// The inventory could not serve an order (an item out of stock): `inventory.rejected`,
/// partitioned by order id.
public struct InventoryRejected: AMQPEvent, Hashable {
    public static let eventType = "InventoryRejected"
    public static let routingKey = "inventory.rejected"

    public var orderID: String
    /// Why, for people: e.g. "SKU-100: 3 wanted, 1 available".
    public var reason: String

    /// Events of one order are handled in order.
    public var partitionKey: String? { orderID }

    public init(orderID: String, reason: String) {
        self.orderID = orderID
        self.reason = reason
    }
}
