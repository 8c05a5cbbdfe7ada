import Synchronization

/// What the public connection handle can read without a hop to the connection thread: written
/// by the connection's actor, read from anywhere.
final class ConnectionStatus: Sendable {
    struct Snapshot: Sendable {
        var isOpen = false
        var isRecovering = false
        var closeReason: AMQPError?
        var negotiated = AMQPConnection.NegotiatedParameters(channelMax: 0, frameMax: 0, heartbeat: 0)
        var serverProperties: FieldTable = [:]
        var blockedReason: String?
    }

    private let state = Locked(Snapshot())
    /// Readers of ``AMQPConnection/events()``, by subscription number; `nil` once closed.
    private let subscribers = Locked<[Int: AsyncStream<AMQPConnection.Event>.Continuation]?>([:])
    private let nextSubscriber = Locked(0)

    var snapshot: Snapshot { state.withLock { $0 } }

    /// Why the broker blocks the connection, if it does; read without copying the snapshot
    /// (every publish checks it).
    var blockedReason: String? { state.withLock { $0.blockedReason } }

    func update(_ body: (inout Snapshot) -> Void) {
        state.withLock { body(&$0) }
    }

    /// A new sequence of the events from now on.
    func subscribe() -> AsyncStream<AMQPConnection.Event> {
        let (stream, continuation) = AsyncStream.makeStream(
            of: AMQPConnection.Event.self, bufferingPolicy: .bufferingNewest(256))
        let number = nextSubscriber.withLock { number in
            number += 1
            return number
        }
        let closedWith: AMQPError? = subscribers.withLock { subscribers in
            guard subscribers != nil else { return snapshot.closeReason ?? AMQPError(.connectionClosed, "closed") }
            subscribers?[number] = continuation
            return nil
        }
        if let closedWith {
            continuation.yield(.closed(closedWith))
            continuation.finish()
        } else {
            // Strongly held, like the consumers' handlers (see ConnectionCore.consume): no side
            // table for a status read on every publish; the closure goes when the sequence ends,
            // at the latest with the `.closed` event.
            continuation.onTermination = { [self] _ in
                subscribers.withLock { _ = $0?.removeValue(forKey: number) }
            }
        }
        return stream
    }

    /// Tells every reader; ``AMQPConnection/Event/closed(_:)`` ends their sequences.
    func publish(_ event: AMQPConnection.Event) {
        let readers = subscribers.withLock { subscribers in
            defer { if case .closed = event { subscribers = nil } }
            return subscribers.map { Array($0.values) } ?? []
        }
        for reader in readers {
            reader.yield(event)
            if case .closed = event { reader.finish() }
        }
    }
}

/// What callers on any thread and the connection's actor share about one channel instance, so
/// the hot paths (publishing, acknowledging) can decide without a hop to the connection thread:
/// whether it is closed and why, how many publishes are in flight, and which delivery tags are
/// still to be acknowledged.
final class ChannelStatus: Sendable {
    private struct State {
        var closeReason: AMQPError?
        /// The confirm window once `confirm.select` was sent; `nil` outside confirm mode.
        var confirmWindow: Int?
        /// Publishes handed over and not settled: in confirm mode until the broker confirms
        /// them, otherwise until they are written.
        var publishesInFlight = 0
        var roomWaiters: [(id: Int, continuation: CheckedContinuation<Void, Never>)] = []
        var nextWaiterID = 0
        /// Tags of deliveries (manual acknowledgement, and `basic.get`) not yet acknowledged:
        /// acknowledging anything else would make the broker close the channel (406).
        var outstandingTags = OutstandingTags()
        /// Counts the recoveries of the channel's connection: delivery tags belong to one.
        var generation = 0
        /// Tags up to this one belong to earlier generations (tags grow across recoveries).
        var staleTagsUpTo: UInt64 = 0
    }

    /// Outside confirm mode, most publishes handed over but not yet written: the bound on the
    /// memory a fast publisher can queue.
    static let unconfirmedQueueLimit = 1000

    private let state = Locked(State())
    /// Returned mandatory messages that no confirm-mode publish reported (see
    /// ``AMQPChannel/returnedMessages``).
    let returns: AsyncStream<ReturnedMessage>
    let returnsContinuation: AsyncStream<ReturnedMessage>.Continuation

    init() {
        (returns, returnsContinuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1024))
    }

    var closeReason: AMQPError? { state.withLock { $0.closeReason } }

    /// Records why the channel closed (the first reason counts: later ones, such as the
    /// connection closing after the channel, say less) and wakes publishers waiting for room.
    func markClosed(_ error: AMQPError) {
        let waiters = state.withLock { state in
            if state.closeReason == nil { state.closeReason = error }
            state.outstandingTags.removeAll()
            defer { state.roomWaiters.removeAll() }
            return state.roomWaiters
        }
        for waiter in waiters { waiter.continuation.resume() }
    }

    // MARK: Publishing

    func enterConfirmMode(window: Int) {
        state.withLock { $0.confirmWindow = max(window, 1) }
    }

    /// Reserves room for one publish if there is some, without waiting: whether the channel is
    /// in confirm mode, or `nil` when the window (or, outside confirm mode, the queue limit) is
    /// full. The common case, kept synchronous: an `async` call costs a check of the executor.
    func reservePublishIfRoom(requireConfirmMode: Bool) throws -> Bool? {
        let decision: Result<Bool?, AMQPError> = state.withLock { state in
            if let reason = state.closeReason { return .failure(reason) }
            if requireConfirmMode, state.confirmWindow == nil {
                return .failure(AMQPError(.invalidArgument, "the channel is not in confirm mode: call confirmSelect() first"))
            }
            guard state.publishesInFlight < (state.confirmWindow ?? Self.unconfirmedQueueLimit) else { return .success(nil) }
            state.publishesInFlight += 1
            return .success(state.confirmWindow != nil)
        }
        return try decision.get()
    }

    /// Reserves room for one publish, waiting while the window (or, outside confirm mode, the
    /// queue limit) is full. Returns whether the channel is in confirm mode.
    ///
    /// - Throws: `CancellationError` when the task is cancelled while it waits: nothing was
    ///   reserved or handed over.
    func reservePublish(requireConfirmMode: Bool) async throws -> Bool {
        while true {
            try Task.checkCancellation()
            switch try reservePublishIfRoom(requireConfirmMode: requireConfirmMode) {
            case let confirm?: return confirm
            case nil:
                let id = state.withLock { state in
                    state.nextWaiterID += 1
                    return state.nextWaiterID
                }
                await withTaskCancellationHandler {
                    await withCheckedContinuation { continuation in
                        let mustWait = state.withLock { state in
                            let full = state.publishesInFlight >= (state.confirmWindow ?? Self.unconfirmedQueueLimit)
                            // Cancellation is checked under the lock: one after this finds the waiter.
                            let wait = full && state.closeReason == nil && !Task.isCancelled
                            if wait { state.roomWaiters.append((id, continuation)) }
                            return wait
                        }
                        if !mustWait { continuation.resume() }
                    }
                } onCancel: {
                    let waiter = state.withLock { state in
                        state.roomWaiters.firstIndex { $0.id == id }.map { state.roomWaiters.remove(at: $0).continuation }
                    }
                    waiter?.resume()
                }
            }
        }
    }

    /// `count` publishes settled (written, or confirmed): their room is free again. Waiting
    /// publishers are woken once an eighth of the window is free, not for every freed slot: a
    /// wake-up costs more than a publish, so they publish in bursts.
    func releasePublishes(_ count: Int) {
        guard count > 0 else { return }
        let waiters = state.withLock { state -> [(id: Int, continuation: CheckedContinuation<Void, Never>)] in
            state.publishesInFlight -= count
            let limit = state.confirmWindow ?? Self.unconfirmedQueueLimit
            guard !state.roomWaiters.isEmpty, limit - state.publishesInFlight >= max(1, limit / 8) else { return [] }
            defer { state.roomWaiters.removeAll() }
            return state.roomWaiters
        }
        for waiter in waiters { waiter.continuation.resume() }
    }

    // MARK: Acknowledgements

    func deliveryOutstanding(_ tag: UInt64) {
        state.withLock { $0.outstandingTags.insert(tag) }
    }

    /// The current generation: deliveries of earlier ones cannot be acknowledged. Read without
    /// the lock (a consumer's iterator asks for every delivery it hands out); what depends on it
    /// exactly is checked again under the lock (``takeOutstanding(_:multiple:generation:channel:)``).
    var generation: Int { currentGeneration.load(ordering: .acquiring) }
    /// The state's generation, stored under the lock whenever it changes.
    private let currentGeneration = Atomic<Int>(0)

    /// The connection was lost: tags delivered so far (all up to `tagsAbove`) mean nothing on
    /// the next connection, whose tags start above them.
    func startNewGeneration(tagsAbove highestTag: UInt64) -> Int {
        state.withLock { state in
            state.generation += 1
            currentGeneration.store(state.generation, ordering: .releasing)
            state.staleTagsUpTo = highestTag
            state.outstandingTags.removeAll()
            return state.generation
        }
    }

    /// Takes `tag` (with `multiple`, every outstanding tag up to it; 0 means all) of `generation`
    /// (`nil`: the current one) off the outstanding set, or explains why it cannot be
    /// acknowledged.
    func takeOutstanding(_ tag: UInt64, multiple: Bool, generation: Int?, channel number: UInt16) throws {
        try state.withLock { state in
            if let reason = state.closeReason {
                throw reason.asClosed(
                    .channelClosed, "the delivery's channel is closed, so it cannot be acknowledged (the broker redelivers it)")
            }
            guard generation == nil || generation == state.generation, tag == 0 || tag > state.staleTagsUpTo else {
                throw AMQPError(
                    .staleDelivery,
                    "delivery tag \(tag) on channel \(number) came before the connection was lost and recovered; the broker redelivers the message")
            }
            if multiple {
                guard tag == 0 ? !state.outstandingTags.isEmpty : state.outstandingTags.contains(tag) else {
                    throw AMQPError(.alreadyAcknowledged, "delivery tag \(tag) is not outstanding on channel \(number)")
                }
                let covered = tag == 0 ? UInt64.max : tag
                state.outstandingTags.removeAll(upTo: covered)
            } else if !state.outstandingTags.remove(tag) {
                throw AMQPError(
                    .alreadyAcknowledged, "delivery tag \(tag) on channel \(number) was already acknowledged or rejected")
            }
        }
    }

    /// `basic.recover`: every earlier delivery will come again with a new tag.
    func forgetOutstandingTags() {
        state.withLock { $0.outstandingTags.removeAll() }
    }
}
