import DequeModule

/// Which delivery runs when, for a dispatcher that handles events with the same partition key one
/// at a time: the decisions, as a value, so they are tested without a broker.
///
/// A key with an event being handled has a *lane*; events of that key that arrive meanwhile wait
/// in it, in delivery order. When the lane's event is done, the next one of the lane runs; the
/// lane closes when none waits. Keys without a lane start at once. Once ``stop()`` is called (a
/// shutdown, a partition handed to another replica), lanes run nothing more: what waits is handed
/// back, in order, by ``finished(key:)`` so the caller can give it back to the broker after the
/// event before it was settled.
struct OrderedLanes<Item> {
    /// Keys with an event being handled, and the events waiting behind it.
    private var lanes: [String: Deque<Item>] = [:]
    /// Whether lanes still start their next event.
    private(set) var isStopped = false

    /// What a lane does after its event is done.
    enum Next {
        /// Handle this event of the same key now.
        case run(Item)
        /// The lane is closed; nothing waited.
        case closed
        /// The lanes are stopped: give these back to the broker, in this order.
        case giveBack([Item])
    }

    /// Keys with an event being handled.
    var activeLanes: Int { lanes.count }

    /// Events waiting behind another of their key.
    var waiting: Int { lanes.values.reduce(0) { $0 + $1.count } }

    /// What becomes of a new delivery.
    enum Admission {
        /// Its key had no lane: one is opened, handle it now.
        case run(Item)
        /// It waits in its key's lane, behind the event being handled.
        case waits
        /// The lanes are stopped and its key has none: give it back to the broker now.
        case giveBack(Item)
    }

    /// A new delivery of `key`. After ``stop()`` nothing new runs: a delivery whose key has a
    /// lane still waits in it (to be given back after the event before it), any other is given
    /// back at once.
    mutating func admit(_ item: Item, key: String) -> Admission {
        if lanes[key] != nil {
            lanes[key]!.append(item)
            return .waits
        }
        if isStopped { return .giveBack(item) }
        lanes[key] = []
        return .run(item)
    }

    /// The event of `key`'s lane is done (settled with the broker): what the lane does next.
    mutating func finished(key: String) -> Next {
        guard var waiting = lanes.removeValue(forKey: key) else { return .closed }
        if isStopped { return waiting.isEmpty ? .closed : .giveBack(Array(waiting)) }
        guard let next = waiting.popFirst() else { return .closed }
        lanes[key] = waiting
        return .run(next)
    }

    /// Stops every lane after its current event.
    mutating func stop() {
        isStopped = true
    }
}

extension OrderedLanes: Sendable where Item: Sendable {}
