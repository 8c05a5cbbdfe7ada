import RabbitMQ

/// What the dispatcher does when the broker fails to declare its topology for a reason of its
/// own: which failures are worth trying again, and how long to wait before each new attempt.
///
/// RabbitMQ gives a new quorum queue's Raft group 5 s to elect a leader; a node that is busy
/// (or a cluster missing members) misses that and answers `541 INTERNAL_ERROR …
/// cluster_not_formed`, closing the connection, although the same declaration succeeds a
/// moment later. A daemon that died of it at start would need its supervisor to restart it; the
/// dispatcher tries again on a new connection instead, as a Spring or MassTransit consumer keeps
/// restarting, until it succeeds or a graceful shutdown begins.
struct TopologyRetry: Sendable, Equatable {
    /// The wait after the first refusal; each further refusal doubles it.
    var initialDelay: Duration = .seconds(1)
    /// The longest wait between two attempts.
    var maximumDelay: Duration = .seconds(30)

    /// The broker's reply code for a failure inside the broker (AMQP 0-9-1 `internal-error`).
    static let internalError: UInt16 = 541

    /// Whether declaring may succeed if tried again: only the broker's own failure (541). A
    /// refusal of the request itself (406 for arguments that differ from the existing queue's,
    /// 403, 404) would be refused again, and a failure to connect is the connection's retry's.
    static func isTransient(_ error: any Error) -> Bool {
        (error as? AMQPError)?.replyCode == internalError
    }

    /// The wait before trying again after `refusals` failed attempts in a row (1 or more).
    func delay(afterRefusals refusals: Int) -> Duration {
        var delay = max(initialDelay, .zero)
        for _ in 1..<max(refusals, 1) {
            if delay >= maximumDelay { break }
            delay *= 2
        }
        return min(delay, maximumDelay)
    }
}
