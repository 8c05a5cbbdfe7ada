/// How long the connection's loop may sleep when neither the socket nor a job wakes it.
///
/// The loop must go round for two reasons only: librabbitmq sends heartbeats from its read
/// functions (so with heartbeats on it reads at least four times a period, which also checks
/// for missed ones), and deadlines (an RPC's reply, the close handshake, a blocked publish, a
/// wait for the recovery, a channel draining after its close) are checked on these turns. An
/// idle connection with nothing timed sleeps a quarter heartbeat, or ``idle`` without heartbeats,
/// instead of waking every second.
struct LoopTicks: Equatable {
    /// The negotiated heartbeat interval; zero when heartbeats are off.
    var heartbeat: Duration

    /// How often deadlines are checked while something has one.
    static let timerResolution: Duration = .seconds(1)

    /// The longest sleep without heartbeats and with nothing timed.
    static let idle: Duration = .seconds(30)

    /// The time until the next turn: `timed` when anything with a deadline is pending.
    func interval(timed: Bool) -> Duration {
        let base = heartbeat > .zero ? min(heartbeat / 4, Self.idle) : Self.idle
        return timed ? min(base, Self.timerResolution) : base
    }
}
