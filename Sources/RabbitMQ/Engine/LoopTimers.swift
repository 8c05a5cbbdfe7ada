/// The sleeps a connection's thread keeps (``AMQPConnection/sleep(until:)``), earliest first: its
/// event loop waits no longer than the earliest, then wakes the sleeps that are due.
///
/// A value: the executor keeps it under its lock and resumes the waiters outside it.
struct LoopTimers<Waiter> {
    private var entries: [(id: Int, deadline: ContinuousClock.Instant, waiter: Waiter)] = []
    private var nextID = 0

    /// When the earliest sleep is due; `nil` when none waits.
    var earliest: ContinuousClock.Instant? { entries.first?.deadline }

    var isEmpty: Bool { entries.isEmpty }

    /// An identifier for a sleep added later with ``add(_:deadline:id:)``, known before it is
    /// added (its cancellation handler may run first).
    mutating func reserveID() -> Int {
        nextID += 1
        return nextID
    }

    /// Adds a sleep under an identifier from ``reserveID()``. Returns whether it is now the
    /// earliest, which a sleeping loop must be woken for.
    mutating func add(_ waiter: Waiter, deadline: ContinuousClock.Instant, id: Int) -> Bool {
        // After every entry due at or before it: equal deadlines wake in the order they came.
        var low = 0
        var high = entries.count
        while low < high {
            let middle = (low + high) / 2
            if entries[middle].deadline <= deadline { low = middle + 1 } else { high = middle }
        }
        entries.insert((id, deadline, waiter), at: low)
        return low == 0
    }

    /// Takes a sleep out (its task was cancelled); `nil` when it already woke.
    mutating func remove(id: Int) -> Waiter? {
        guard let index = entries.firstIndex(where: { $0.id == id }) else { return nil }
        return entries.remove(at: index).waiter
    }

    /// Takes the sleeps due at `now`, earliest first.
    mutating func takeDue(at now: ContinuousClock.Instant) -> [Waiter] {
        guard let first = entries.first, first.deadline <= now else { return [] }
        let dueCount = entries.firstIndex { $0.deadline > now } ?? entries.count
        defer { entries.removeFirst(dueCount) }
        return entries.prefix(dueCount).map(\.waiter)
    }

    /// Takes every sleep (the connection's thread is going away).
    mutating func takeAll() -> [Waiter] {
        defer { entries.removeAll() }
        return entries.map(\.waiter)
    }
}

extension LoopTimers: Sendable where Waiter: Sendable {}
