import Metrics

/// The connection's swift-metrics instruments, created once per connection (the metrics
/// backend the application bootstrapped receives them; with none they cost nothing).
///
/// Dimensions: `connection`, the configured connection name, when there is one. Never a host
/// name with credentials, never a password.
struct ConnectionMetrics: Sendable {
    /// `rabbitmq_client_reconnect_attempts_total`: reconnect attempts, successful or not.
    let reconnectAttempts: Counter
    /// `rabbitmq_client_recoveries_total`: recoveries completed.
    let recoveries: Counter
    /// `rabbitmq_client_recovery_duration`: from losing the connection to having re-created it.
    let recoveryDuration: Metrics.Timer

    init(connectionName: String?) {
        let dimensions = connectionName.map { [("connection", $0)] } ?? []
        reconnectAttempts = Counter(label: "rabbitmq_client_reconnect_attempts_total", dimensions: dimensions)
        recoveries = Counter(label: "rabbitmq_client_recoveries_total", dimensions: dimensions)
        recoveryDuration = Metrics.Timer(label: "rabbitmq_client_recovery_duration", dimensions: dimensions)
    }

    func recovered(after duration: Duration) {
        recoveries.increment()
        recoveryDuration.record(duration: duration)
    }
}
