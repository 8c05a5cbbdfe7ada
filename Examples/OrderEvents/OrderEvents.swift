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

/// A customer placed an order: `order.created`.
public struct OrderCreated: AMQPEvent, Hashable {
    public static let eventType = "OrderCreated"
    public static let routingKey = "order.created"

    public var orderID: String
    public var customerID: String
    public var items: [OrderItem]
    public var createdAt: Date

    public init(orderID: String, customerID: String, items: [OrderItem], createdAt: Date = Date()) {
        self.orderID = orderID
        self.customerID = customerID
        self.items = items
        self.createdAt = createdAt
    }
}

/// A customer cancelled an order: `order.cancelled`.
public struct OrderCancelled: AMQPEvent, Hashable {
    public static let eventType = "OrderCancelled"
    public static let routingKey = "order.cancelled"

    public var orderID: String
    public var items: [OrderItem]
    public var reason: String

    public init(orderID: String, items: [OrderItem], reason: String) {
        self.orderID = orderID
        self.items = items
        self.reason = reason
    }
}

/// The inventory set stock aside for an order: `inventory.reserved`.
public struct InventoryReserved: AMQPEvent, Hashable {
    public static let eventType = "InventoryReserved"
    public static let routingKey = "inventory.reserved"

    public var orderID: String
    public var items: [OrderItem]

    public init(orderID: String, items: [OrderItem]) {
        self.orderID = orderID
        self.items = items
    }
}
