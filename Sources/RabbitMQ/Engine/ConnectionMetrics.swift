import Metrics

/// The connection's swift-metrics instruments, created once per connection (the metrics
/// backend the application bootstrapped receives them; with none they cost nothing).
///
/// Labels are `rabbitmq_client_*`; the one dimension is `connection`, the configured connection
/// name, when there is one. Never a host name with credentials, never a password. Per-message
/// counters are incremented once per batch (a loop turn, a run of commands), not per message.
struct ConnectionMetrics: Sendable {
    /// Messages written to the socket.
    let published: Counter
    /// Publishes the broker confirmed (`basic.ack`).
    let confirmed: Counter
    /// Publishes the broker refused (`basic.nack`).
    let nacked: Counter
    /// Mandatory messages the broker returned as unroutable.
    let returned: Counter
    /// Messages delivered to consumers or fetched with `basic.get`.
    let delivered: Counter
    /// Deliveries acknowledged (`basic.ack`).
    let acknowledged: Counter
    /// Deliveries rejected back into their queue (`nack`/`reject` with requeue).
    let requeued: Counter
    /// Deliveries rejected for good (`nack`/`reject` without requeue: dead-lettered or dropped).
    let rejected: Counter
    /// How long each `connection.blocked` lasted.
    let blockedTime: Metrics.Timer
    /// Reconnect attempts, successful or not.
    let reconnectAttempts: Counter
    /// Recoveries completed.
    let recoveries: Counter
    /// From losing the connection to having re-created it.
    let recoveryDuration: Metrics.Timer

    init(connectionName: String?) {
        let dimensions = connectionName.map { [("connection", $0)] } ?? []
        func counter(_ name: String) -> Counter { Counter(label: "rabbitmq_client_\(name)", dimensions: dimensions) }
        func timer(_ name: String) -> Metrics.Timer { Metrics.Timer(label: "rabbitmq_client_\(name)", dimensions: dimensions) }
        published = counter("published_total")
        confirmed = counter("confirmed_total")
        nacked = counter("nacked_total")
        returned = counter("returned_total")
        delivered = counter("delivered_total")
        acknowledged = counter("acked_total")
        requeued = counter("requeued_total")
        rejected = counter("rejected_total")
        blockedTime = timer("blocked_duration")
        reconnectAttempts = counter("reconnect_attempts_total")
        recoveries = counter("recoveries_total")
        recoveryDuration = timer("recovery_duration")
    }

    /// Per-message events gathered on the connection thread between two reports.
    struct UnreportedCounts {
        var published = 0
        var delivered = 0
        var acknowledged = 0
        var requeued = 0
        var rejected = 0

        /// Counts an acknowledgement sent, by kind.
        mutating func acknowledgementSent(_ kind: AcknowledgementKind) {
            switch kind {
            case .ack: acknowledged += 1
            case .nack(let requeue), .reject(let requeue):
                if requeue { requeued += 1 } else { rejected += 1 }
            }
        }
    }

    /// Hands a batch of counts to the backend: one increment per counter that moved.
    func report(_ counts: UnreportedCounts) {
        func add(_ count: Int, to counter: Counter) { if count > 0 { counter.increment(by: count) } }
        add(counts.published, to: published)
        add(counts.delivered, to: delivered)
        add(counts.acknowledged, to: acknowledged)
        add(counts.requeued, to: requeued)
        add(counts.rejected, to: rejected)
    }

    func recovered(after duration: Duration) {
        recoveries.increment()
        recoveryDuration.record(duration: duration)
    }
}
