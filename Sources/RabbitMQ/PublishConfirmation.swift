/// The broker's verdict on one message published in confirm mode.
///
/// `AMQPChannel.publish(_:exchange:routingKey:mandatory:properties:)` waits for it;
/// ``AMQPChannel/publishWithoutWaiting(_:exchange:routingKey:mandatory:properties:)`` returns it so
/// many messages can be in flight:
///
/// ```swift
/// var pending: [PublishConfirmation] = []
/// for event in events {
///     pending.append(try await channel.publishWithoutWaiting(event, routingKey: "order.created"))
/// }
/// for confirmation in pending { try await confirmation.wait() }
/// ```
public final class PublishConfirmation: Sendable {
    private struct State {
        var sequenceNumber: UInt64 = 0
        var result: Result<Void, AMQPError>?
        var waiters: [(id: Int, continuation: CheckedContinuation<Void, any Error>)] = []
        var nextWaiterID = 0
    }

    private let state = Locked(State())

    init() {}

    /// The message's publish sequence number on its channel (1 for the first after
    /// `confirm.select`); 0 until the connection has sent it.
    public var sequenceNumber: UInt64 { state.withLock { $0.sequenceNumber } }

    func assign(sequenceNumber: UInt64) {
        state.withLock { $0.sequenceNumber = sequenceNumber }
    }

    /// Waits until the broker confirms the message.
    ///
    /// Cancelling the waiting task ends the wait at once with `CancellationError`; the message
    /// is not withdrawn (it may already be on its way), and its verdict still arrives here.
    ///
    /// - Throws: ``AMQPError/Code/publishNacked`` when the broker refused it (e.g. a full queue
    ///   with `x-overflow: reject-publish`), ``AMQPError/Code/publishReturned`` when it was
    ///   `mandatory` and unroutable (reply code 312), or the channel's or connection's close
    ///   reason when they closed first: then the outcome is unknown, and the message may or may
    ///   not have reached the broker.
    nonisolated(nonsending) public func wait() async throws {
        // One lock for both: the verdict if there is one, else a number for the wait.
        let (result, id) = state.withLock { state -> (Result<Void, AMQPError>?, Int) in
            if let result = state.result { return (result, 0) }
            state.nextWaiterID += 1
            return (nil, state.nextWaiterID)
        }
        if let result { return try result.get() }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                enum Decision { case wait, resume(Result<Void, AMQPError>), cancelled }
                let decision: Decision = state.withLock { state in
                    if let result = state.result { return .resume(result) }
                    // Checked under the lock: a cancellation after this finds the waiter.
                    if Task.isCancelled { return .cancelled }
                    state.waiters.append((id, continuation))
                    return .wait
                }
                switch decision {
                case .wait: break
                case .resume(let result): continuation.resume(with: result.mapError { $0 })
                case .cancelled: continuation.resume(throwing: CancellationError())
                }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                state.waiters.firstIndex { $0.id == id }.map { state.waiters.remove(at: $0).continuation }
            }
            waiter?.resume(throwing: CancellationError())
        }
    }

    /// The verdict, once there is one: `nil` while the broker has not answered.
    public var result: Result<Void, AMQPError>? { state.withLock { $0.result } }

    /// Records the verdict; only the first counts.
    func resolve(_ result: Result<Void, AMQPError>) {
        let waiters = state.withLock { state -> [(id: Int, continuation: CheckedContinuation<Void, any Error>)] in
            guard state.result == nil else { return [] }
            state.result = result
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.continuation.resume(with: result.mapError { $0 }) }
    }
}
