/// The handlers of an ``EventDispatcher``, one per event type.
///
/// ```swift
/// var handlers = EventHandlers()
/// handlers.on(OrderCreated.self) { event, context in try await inventory.reserve(event) }
/// handlers.on(OrderCancelled.self) { event, context in try await inventory.release(event) }
/// ```
public struct EventHandlers: Sendable {
    /// Decodes a body with the codec and runs the typed handler on it.
    struct Entry: Sendable {
        let routingKey: String
        let decode: @Sendable (any EventCodec, [UInt8]) throws -> any Sendable
        let handle: @Sendable (any Sendable, EventContext) async throws -> Void
    }

    private(set) var byType: [String: Entry] = [:]
    private(set) var byRoutingKey: [String: Entry] = [:]

    /// An empty set of handlers.
    public init() {}

    /// Registers the handler for events of type `Event`: deliveries whose `type` property is
    /// `Event.eventType`, or, when they carry no `type`, whose routing key is `Event.routingKey`.
    /// Registering a type again replaces its handler.
    public mutating func on<Event: AMQPEvent>(
        _ type: Event.Type, _ handler: @escaping @Sendable (Event, EventContext) async throws -> Void
    ) {
        let entry = Entry(
            routingKey: Event.routingKey,
            decode: { codec, body in try codec.decode(Event.self, from: body) },
            handle: { event, context in
                // The dispatcher only passes what `decode` produced for this entry.
                guard let event = event as? Event else { return }
                try await handler(event, context)
            })
        byType[Event.eventType] = entry
        byRoutingKey[Event.routingKey] = entry
    }

    /// The handler for a delivery: by its type name, or by its routing key when it carries no
    /// type. A type nobody registered has no handler, whatever its routing key.
    func entry(type: String?, routingKey: String) -> Entry? {
        if let type, !type.isEmpty { return byType[type] }
        return byRoutingKey[routingKey]
    }

    /// The routing keys of every registered event type.
    var routingKeys: [String] { byType.values.map(\.routingKey).sorted() }
}
