/// A typed event: a `Codable` value with a stable type name and routing key.
///
/// ```swift
/// struct OrderCreated: AMQPEvent {
///     static let eventType = "OrderCreated"
///     static let routingKey = "order.created"
///     var orderID: String
///     var items: [Item]
/// }
/// ```
///
/// The type name travels in the message's `type` property and picks the handler on the consuming
/// side; the routing key decides which queues the exchange routes it to. Keep both stable:
/// consumers and bindings depend on them, whatever the Swift type is called.
public protocol AMQPEvent: Codable, Sendable {
    /// The stable name of the event type, sent as the message's `type` property.
    static var eventType: String { get }
    /// The routing key the event is published with, e.g. `order.created`.
    static var routingKey: String { get }
}
