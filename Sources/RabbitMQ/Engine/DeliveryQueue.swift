/// The hand-over of one consumer's deliveries from the connection's thread to the task that
/// iterates them.
///
/// What `AsyncThrowingStream` did here, with the same rules, but made for this one element type:
/// the stream's storage is generic code that the standard library does not specialise, so each
/// hand-over looked its generic metadata up at run time, and a delivery went through a generic
/// buffer. At low rates, where every delivery wakes a thread with cold caches, that was a
/// measurable part of a message's cost.
///
/// The rules, as the stream's:
/// - The engine hands over batches (``yield(_:)``); batches not yet taken join into one.
/// - ``finish(throwing:)`` ends the sequence after what is buffered; the error is thrown once.
/// - When the reading task is cancelled while it waits, or every ``DeliveryReader`` is gone, the
///   queue ends as if finished and `onCancel` runs (once): the consumer is cancelled on the
///   broker. What is buffered is still handed out (a reader draining it gives it back).
/// - After the end, ``yield(_:)`` takes nothing and returns the batch: the engine gives those
///   deliveries back to the broker.
final class DeliveryQueue: Sendable {
    private struct State: Sendable {
        var buffer: [DeliveryContent] = []
        /// The reading task, suspended until a batch or the end.
        var waiter: UnsafeContinuation<[DeliveryContent]?, any Error>?
        /// Set at the end; its error (if any) is thrown by the next read of an empty buffer.
        var ended = false
        var failure: (any Error)?
        var onCancel: (@Sendable () -> Void)?
    }

    private let state = Locked(State())

    /// Sets what runs when the reader cancels (see the type's rules). Not run after the end.
    func setOnCancel(_ handler: @escaping @Sendable () -> Void) {
        state.withLock { state in
            guard !state.ended else { return }
            state.onCancel = handler
        }
    }

    /// Hands a batch to the reader. Once the queue has ended it takes nothing and returns the
    /// batch, for the engine to give back; otherwise `nil`.
    func yield(_ batch: consuming [DeliveryContent]) -> [DeliveryContent]? {
        enum Action { case refused, buffered, resume(UnsafeContinuation<[DeliveryContent]?, any Error>) }
        // Moved into the lock's closure and out again: the array is never copied.
        var batch = Optional(batch)
        let action: Action = state.withLock { state in
            if state.ended { return .refused }
            if let waiter = state.waiter {
                state.waiter = nil
                return .resume(waiter)
            }
            if state.buffer.isEmpty {
                state.buffer = batch.take()!
            } else {
                state.buffer.append(contentsOf: batch.take()!)
            }
            return .buffered
        }
        switch action {
        case .refused: return batch.take()!
        case .buffered: return nil
        case .resume(let waiter):
            waiter.resume(returning: batch.take()!)
            return nil
        }
    }

    /// Ends the sequence once what is buffered has been read: normally, or by throwing `error`.
    /// Does nothing once it has ended.
    func finish(throwing error: (any Error)? = nil) {
        let waiter: UnsafeContinuation<[DeliveryContent]?, any Error>? = state.withLock { state in
            guard !state.ended else { return nil }
            state.ended = true
            state.onCancel = nil  // it held the engine: let it go
            let waiter = state.waiter
            state.waiter = nil
            // A waiter means an empty buffer: it gets the end now, else the next read does.
            if waiter == nil { state.failure = error }
            return waiter
        }
        guard let waiter else { return }
        if let error { waiter.resume(throwing: error) } else { waiter.resume(returning: nil) }
    }

    /// The reader is gone or cancelled: runs `onCancel`, then ends the sequence.
    func cancel() {
        let handler = state.withLock { state in
            defer { state.onCancel = nil }
            return state.ended ? nil : state.onCancel
        }
        handler?()
        finish()
    }

    /// The next batch: what is buffered, or the next one handed over; `nil` at the end (after
    /// throwing the error it ended with, if any). One reading task at a time.
    nonisolated(nonsending) func next() async throws -> [DeliveryContent]? {
        // Without waiting when something is there (unless cancelled: the slow path cancels).
        if !Task.isCancelled, case .ready(let result) = state.withLock({ Self.read(&$0) }) {
            return try result.get()
        }
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<[DeliveryContent]?, any Error>) in
                let read: Read = state.withLock { state in
                    let read = Self.read(&state)
                    if case .mustWait = read {
                        precondition(state.waiter == nil, "swift-rabbitmq: a consumer was iterated by two tasks at once")
                        state.waiter = continuation
                    }
                    return read
                }
                if case .ready(let result) = read { continuation.resume(with: result) }
            }
        } onCancel: {
            cancel()
        }
    }

    /// Whether a reading task waits (for tests).
    var hasWaitingReader: Bool { state.withLock { $0.waiter != nil } }

    /// What a read finds without waiting.
    private enum Read {
        /// The buffer, the end (`nil`), or the error the sequence ended with.
        case ready(Result<[DeliveryContent]?, any Error>)
        case mustWait
    }

    private static func read(_ state: inout State) -> Read {
        if !state.buffer.isEmpty {
            var taken: [DeliveryContent] = []
            swap(&taken, &state.buffer)
            return .ready(.success(taken))
        }
        guard state.ended else { return .mustWait }
        if let failure = state.failure {
            state.failure = nil  // thrown once
            return .ready(.failure(failure))
        }
        return .ready(.success(nil))
    }
}

/// The reading side of a ``DeliveryQueue``, held by a consumer and its iterators: when the last
/// of them goes, the queue is cancelled (the consumer is cancelled on the broker), as a stream is
/// when nobody holds it any more.
final class DeliveryReader: Sendable {
    let queue: DeliveryQueue

    init(_ queue: DeliveryQueue) {
        self.queue = queue
    }

    deinit {
        queue.cancel()
    }

    /// The next batch (see ``DeliveryQueue/next()``).
    nonisolated(nonsending) func next() async throws -> [DeliveryContent]? {
        try await queue.next()
    }
}
