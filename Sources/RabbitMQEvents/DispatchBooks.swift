import RabbitMQ

/// What an ``EventDispatcher`` shares between its consumer loop and its handler tasks: the ordered
/// lanes, how many handler tasks run, and who waits for them to be done. Each method is one short
/// critical section; nothing waits while holding the lock.
final class DispatchBooks: Sendable {
    private struct State: Sendable {
        var lanes = OrderedLanes<AMQPDelivery>()
        /// Handler tasks running: one per event without a key, one per open lane.
        var inFlight = 0
        var idleWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter = 0

        /// Hands the waiters over once nothing runs any more after a stop.
        mutating func takeWaitersIfIdle() -> [CheckedContinuation<Void, Never>] {
            guard lanes.isStopped, inFlight == 0, !idleWaiters.isEmpty else { return [] }
            defer { idleWaiters = [:] }
            return Array(idleWaiters.values)
        }
    }

    private let state = Locked(State())

    /// Whether the dispatcher stopped starting handlers (a graceful shutdown).
    var isStopping: Bool { state.withLock { $0.lanes.isStopped } }

    /// Handler tasks running.
    var inFlight: Int { state.withLock { $0.inFlight } }

    /// A handler task for an event without a key starts.
    func started() {
        state.withLock { $0.inFlight += 1 }
    }

    /// A handler task for an event without a key is done.
    func finished() {
        let waiters = state.withLock { state in
            state.inFlight -= 1
            return state.takeWaitersIfIdle()
        }
        for waiter in waiters { waiter.resume() }
    }

    /// A delivery with a key: returns it when it opens a lane (the caller starts the lane's task),
    /// `nil` when it waits in its lane or the dispatcher is stopping.
    func admit(_ delivery: AMQPDelivery, key: String) -> AMQPDelivery? {
        state.withLock { state in
            switch state.lanes.admit(delivery, key: key) {
            case .run(let first):
                state.inFlight += 1
                return first
            case .waits, .giveBack:
                return nil
            }
        }
    }

    /// The lane of `key` settled its event: returns the next event to handle, or `nil` when the
    /// lane closed (nothing waits, or the dispatcher is stopping: what waits stays unacknowledged
    /// until the channel closes, and goes back to the queue in order).
    func finished(key: String) -> AMQPDelivery? {
        let (next, waiters): (AMQPDelivery?, [CheckedContinuation<Void, Never>]) = state.withLock { state in
            switch state.lanes.finished(key: key) {
            case .run(let next):
                return (next, [])
            case .closed, .giveBack:
                state.inFlight -= 1
                return (nil, state.takeWaitersIfIdle())
            }
        }
        for waiter in waiters { waiter.resume() }
        return next
    }

    /// Stops starting handlers: from now on no lane runs its next event and no new delivery
    /// starts.
    func stop() {
        state.withLock { $0.lanes.stop() }
    }

    /// Stops starting handlers and waits until none runs (returns early when cancelled).
    func stopAndWaitUntilIdle() async {
        let id = state.withLock { state in
            state.lanes.stop()
            state.nextWaiter += 1
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state in
                    if state.inFlight == 0 || Task.isCancelled { return true }
                    state.idleWaiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { $0.idleWaiters.removeValue(forKey: id) }
            waiter?.resume()
        }
    }
}
