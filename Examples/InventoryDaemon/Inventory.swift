import OrderEvents

/// The daemon's stock book: reserves stock for new orders and releases it for cancelled ones.
/// (A real service keeps this in its database; the point here is the consumer around it.)
actor Inventory {
    private var reserved: [String: Int] = [:]
    private var handledOrders = 0

    func reserve(_ order: OrderCreated) -> Int {
        for item in order.items { reserved[item.sku, default: 0] += item.quantity }
        handledOrders += 1
        return handledOrders
    }

    func release(_ cancellation: OrderCancelled) {
        for item in cancellation.items { reserved[item.sku, default: 0] -= item.quantity }
    }

    var totalReserved: Int { reserved.values.reduce(0, +) }
}
