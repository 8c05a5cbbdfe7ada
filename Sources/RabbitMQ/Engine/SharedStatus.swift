/// What the public connection handle can read without a hop to the connection thread: written
/// by the connection's actor, read from anywhere.
final class ConnectionStatus: Sendable {
    struct Snapshot: Sendable {
        var isOpen = false
        var closeReason: AMQPError?
        var negotiated = AMQPConnection.NegotiatedParameters(channelMax: 0, frameMax: 0, heartbeat: 0)
        var serverProperties: FieldTable = [:]
        var blockedReason: String?
    }

    private let state = Locked(Snapshot())

    var snapshot: Snapshot { state.withLock { $0 } }

    func update(_ body: (inout Snapshot) -> Void) {
        state.withLock { body(&$0) }
    }
}

/// The closed state of one channel, shared by its handle and the connection's actor, so a call
/// on a closed channel reports why it closed even after the channel number was reused.
final class ChannelStatus: Sendable {
    private let reason = Locked<AMQPError?>(nil)
    /// Returned mandatory messages that no confirm-mode publish took (see
    /// ``AMQPChannel/returnedMessages``).
    let returns: AsyncStream<ReturnedMessage>
    let returnsContinuation: AsyncStream<ReturnedMessage>.Continuation

    init() {
        (returns, returnsContinuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1024))
    }

    var closeReason: AMQPError? { reason.withLock { $0 } }

    /// Records the first reason; later ones (e.g. the connection closing after the channel) are
    /// less informative.
    func markClosed(_ error: AMQPError) {
        reason.withLock { if $0 == nil { $0 = error } }
    }
}
