/// Cancellation of the waits a caller can be suspended in on the connection's actor: a reply
/// to a synchronous method, the end of a recovery, the broker unblocking the connection.
///
/// Each wait registers its continuation with a number. When the waiting task is cancelled the
/// wait ends at once with `CancellationError` and the books stay consistent: a method not yet
/// sent is taken out of its channel's queue and never sent; one already sent stays in the queue
/// (the broker's reply must still be read in order) and its reply goes to nobody, except what
/// must not be left behind: a message from `basic.get` is given back, a consumer is cancelled.
extension ConnectionCore {
    /// Suspends until `register`'s continuation is resumed, or the task is cancelled.
    /// `register` runs on the actor, unless the task is cancelled already, but not necessarily
    /// at once: other jobs of the actor (the loop's turns) may run between the caller's checks
    /// and `register`, so `register` checks again what it relies on.
    func waitCancellably<Value: Sendable>(
        _ register: (Int, CheckedContinuation<Value, any Error>) -> Void
    ) async throws -> Value {
        nextWaiterID += 1
        let id = nextWaiterID
        // withTaskCancellationHandler runs its operation as a nonisolated closure (off the
        // actor): the continuation is made with the actor's isolation named explicitly, so
        // `register` runs on the connection's thread.
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation(isolation: self) { continuation in
                // A cancellation before this point finds nothing registered: checked here.
                if Task.isCancelled {
                    continuation.resume(throwing: CancellationError())
                } else {
                    register(id, continuation)
                }
            }
        } onCancel: {
            Task { await self.cancelWaiter(id) }
        }
    }

    /// Ends the wait numbered `id` with `CancellationError`, if it still waits.
    func cancelWaiter(_ id: Int) {
        if let index = recoveryWaiters.firstIndex(where: { $0.id == id }) {
            recoveryWaiters.remove(at: index).continuation.resume(throwing: CancellationError())
            return
        }
        if let index = blockedPublishers.firstIndex(where: { $0.id == id }) {
            blockedPublishers.remove(at: index).continuation.resume(throwing: CancellationError())
            return
        }
        for record in channels.values {
            if let index = record.pending.firstIndex(where: { $0.continuation.id == id }) {
                let reply = record.pending[index]
                if reply.transmit != nil {
                    // Never sent: it never will be.
                    record.pending.remove(at: index)
                    transmitNext(on: record)
                }
                reply.continuation.resume(throwing: CancellationError())
                return
            }
            if let incoming = record.incoming, case .get(let waiting) = incoming.origin, waiting.continuation.id == id {
                waiting.continuation.resume(throwing: CancellationError())
                return
            }
        }
    }
}

/// The task waiting for the reply to a synchronous method; resumed at most once. Once resumed
/// (a cancelled caller), the reply is still read when it comes, for nobody.
final class ReplyWaiter {
    /// The number ``ConnectionCore/cancelWaiter(_:)`` finds it by.
    let id: Int
    private var continuation: CheckedContinuation<MethodReply, any Error>?

    init(id: Int, _ continuation: CheckedContinuation<MethodReply, any Error>) {
        self.id = id
        self.continuation = continuation
    }

    /// Whether the caller stopped waiting (it was cancelled).
    var isAbandoned: Bool { continuation == nil }

    func resume(returning reply: MethodReply) {
        continuation?.resume(returning: reply)
        continuation = nil
    }

    func resume(throwing error: any Error) {
        continuation?.resume(throwing: error)
        continuation = nil
    }
}
