/// A typed event: a `Codable` value with a stable type name and routing key, and optionally a
/// partition key.
///
/// ```swift
/// struct OrderCreated: AMQPEvent {
///     static let eventType = "OrderCreated"
///     static let routingKey = "order.created"
///     var orderID: String
///     var items: [Item]
///     var partitionKey: String? { orderID }
/// }
/// ```
///
/// The type name travels in the message's `type` property and picks the handler on the consuming
/// side; the routing key decides which queues the exchange routes it to. Keep both stable:
/// consumers and bindings depend on them, whatever the Swift type is called.
///
/// The partition key names what the event belongs to (an order, an account): events with the
/// same key are handled one at a time, in the order they were published (``EventDispatcher``),
/// and land in the same partition queue when the topology is partitioned.
public protocol AMQPEvent: Codable, Sendable {
    /// The stable name of the event type, sent as the message's `type` property.
    static var eventType: String { get }
    /// The routing key the event is published with, e.g. `order.created`.
    static var routingKey: String { get }
    /// What the event belongs to, e.g. the order id; `nil` (the default) for events that need no
    /// order. Sent in the ``EventHeader/partitionKey`` header.
    var partitionKey: String? { get }
}

extension AMQPEvent {
    /// No partition key: the event is handled concurrently with any other.
    public var partitionKey: String? { nil }
}

/// Header names the event layer writes on every message it publishes.
public enum EventHeader {
    /// The event's partition key (a string), when its type names one. Consumers order by it and
    /// the partitioned topology's consistent-hash exchange routes by it.
    public static let partitionKey = "x-partition-key"
}
