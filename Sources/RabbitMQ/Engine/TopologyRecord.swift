internal import CRabbitMQ

/// An exchange as the application declared it, to declare again after a recovery.
struct RecordedExchange: Hashable, Sendable {
    let name: String
    let type: String
    let durable: Bool
    let autoDelete: Bool
    let `internal`: Bool
    let arguments: FieldTable

    /// `exchange.declare` for it; the one builder both the application's declare and the
    /// recovery use.
    func declareMethod(_ arena: CArena, passive: Bool) throws -> amqp_exchange_declare_t {
        amqp_exchange_declare_t(
            ticket: 0, exchange: arena.bytes(name), type: arena.bytes(type), passive: amqpBoolean(passive),
            durable: amqpBoolean(durable), auto_delete: amqpBoolean(autoDelete), internal: amqpBoolean(`internal`),
            nowait: 0, arguments: try arena.table(arguments))
    }
}

/// A queue as the application declared it.
struct RecordedQueue: Hashable, Sendable {
    /// The name asked for, or once declared, the broker's name for a server-named queue.
    var name: String
    /// Declared with an empty name: the broker chooses a new name at each declare.
    let isServerNamed: Bool
    let durable: Bool
    let exclusive: Bool
    let autoDelete: Bool
    let arguments: FieldTable

    /// `queue.declare` for it: with an empty name for a server-named queue.
    func declareMethod(_ arena: CArena, passive: Bool) throws -> amqp_queue_declare_t {
        amqp_queue_declare_t(
            ticket: 0, queue: arena.bytes(isServerNamed ? "" : name), passive: amqpBoolean(passive),
            durable: amqpBoolean(durable), exclusive: amqpBoolean(exclusive), auto_delete: amqpBoolean(autoDelete),
            nowait: 0, arguments: try arena.table(arguments))
    }
}

/// A binding: of a queue to an exchange, or of exchange `destination` to exchange `source`.
struct RecordedBinding: Hashable, Sendable {
    var destination: String
    let source: String
    let routingKey: String
    let arguments: FieldTable

    func queueBindMethod(_ arena: CArena) throws -> amqp_queue_bind_t {
        amqp_queue_bind_t(
            ticket: 0, queue: arena.bytes(destination), exchange: arena.bytes(source),
            routing_key: arena.bytes(routingKey), nowait: 0, arguments: try arena.table(arguments))
    }

    func queueUnbindMethod(_ arena: CArena) throws -> amqp_queue_unbind_t {
        amqp_queue_unbind_t(
            ticket: 0, queue: arena.bytes(destination), exchange: arena.bytes(source),
            routing_key: arena.bytes(routingKey), arguments: try arena.table(arguments))
    }

    func exchangeBindMethod(_ arena: CArena) throws -> amqp_exchange_bind_t {
        amqp_exchange_bind_t(
            ticket: 0, destination: arena.bytes(destination), source: arena.bytes(source),
            routing_key: arena.bytes(routingKey), nowait: 0, arguments: try arena.table(arguments))
    }

    func exchangeUnbindMethod(_ arena: CArena) throws -> amqp_exchange_unbind_t {
        amqp_exchange_unbind_t(
            ticket: 0, destination: arena.bytes(destination), source: arena.bytes(source),
            routing_key: arena.bytes(routingKey), nowait: 0, arguments: try arena.table(arguments))
    }
}

/// A change to the topology that the broker has just confirmed.
enum TopologyChange: Sendable {
    case exchangeDeclared(RecordedExchange)
    case exchangeDeleted(String)
    /// The queue's name is taken from the broker's `declare-ok`.
    case queueDeclared(RecordedQueue)
    case queueDeleted(String)
    case queueBound(RecordedBinding)
    case queueUnbound(RecordedBinding)
    case exchangeBound(RecordedBinding)
    case exchangeUnbound(RecordedBinding)
    /// `basic.qos` on the channel the change was made on (kept by its ``ChannelRecord``).
    case prefetchSet(ChannelRecord.Prefetch)
    /// `tx.select` on the channel the change was made on.
    case transactionsSelected
}

/// What the application declared on a connection, in declaration order: what recovery declares
/// again on the new connection. Confined to the connection's actor.
///
/// Only what the broker confirmed is recorded, and deletes remove what they delete (a queue's
/// bindings go with it, an exchange's with it). Passive declares change nothing, and neither do
/// RabbitMQ's predefined exchanges (`amq.*`, the default exchange).
final class TopologyRecord {
    private(set) var exchanges: [RecordedExchange] = []
    private(set) var queues: [RecordedQueue] = []
    private(set) var queueBindings: [RecordedBinding] = []
    private(set) var exchangeBindings: [RecordedBinding] = []

    /// Whether anything is recorded.
    var isEmpty: Bool { exchanges.isEmpty && queues.isEmpty && queueBindings.isEmpty && exchangeBindings.isEmpty }

    func apply(_ change: TopologyChange, reply: MethodReply? = nil) {
        switch change {
        case .exchangeDeclared(let exchange):
            guard !exchange.name.isEmpty, !exchange.name.hasPrefix("amq.") else { return }
            replace(&exchanges, where: { $0.name == exchange.name }, with: exchange)
        case .exchangeDeleted(let name):
            exchanges.removeAll { $0.name == name }
            queueBindings.removeAll { $0.source == name }
            exchangeBindings.removeAll { $0.source == name || $0.destination == name }
        case .queueDeclared(var queue):
            if case .queueDeclareOk(let result) = reply { queue.name = result.name }
            replace(&queues, where: { $0.name == queue.name }, with: queue)
        case .queueDeleted(let name):
            queues.removeAll { $0.name == name }
            queueBindings.removeAll { $0.destination == name }
        case .queueBound(let binding):
            if !queueBindings.contains(binding) { queueBindings.append(binding) }
        case .queueUnbound(let binding):
            queueBindings.removeAll { $0 == binding }
        case .exchangeBound(let binding):
            if !exchangeBindings.contains(binding) { exchangeBindings.append(binding) }
        case .exchangeUnbound(let binding):
            exchangeBindings.removeAll { $0 == binding }
        case .prefetchSet, .transactionsSelected:
            break
        }
    }

    /// A server-named queue got a new name when it was declared again: its bindings follow.
    func renameQueue(from old: String, to new: String) {
        for index in queues.indices where queues[index].name == old { queues[index].name = new }
        for index in queueBindings.indices where queueBindings[index].destination == old {
            queueBindings[index].destination = new
        }
    }

    /// The recorded queue of that name.
    func queue(named name: String) -> RecordedQueue? {
        queues.first { $0.name == name }
    }

    private func replace<Element>(_ list: inout [Element], where matches: (Element) -> Bool, with element: Element) {
        if let index = list.firstIndex(where: matches) {
            list[index] = element
        } else {
            list.append(element)
        }
    }
}
