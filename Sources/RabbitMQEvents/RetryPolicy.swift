/// How ``EventDispatcher`` retries an event whose handler failed: how many attempts, and how long
/// to wait before each retry.
///
/// The retry happens in place: the dispatcher keeps the delivery, waits the backoff and runs the
/// handler again. Events of the same partition key wait behind it (their order holds); other keys
/// go on. After the last attempt the event is dead-lettered with the error. The wait in all is
/// capped at ``maximumTotalDelay``, far below RabbitMQ's consumer timeout (30 minutes by default),
/// so the broker never takes the delivery away while it waits.
///
/// ```swift
/// // 1 + 3 retries after about 100 ms, 1 s and 10 s (each ±20 %).
/// configuration.retry = RetryPolicy(maxAttempts: 4, initialDelay: .milliseconds(100), multiplier: 10)
/// ```
public struct RetryPolicy: Sendable, Hashable {
    /// Handlings before the event is dead-lettered, the first included (1 = no retry).
    public var maxAttempts: Int
    /// The wait before the first retry.
    public var initialDelay: Duration
    /// Each following wait is this many times the one before.
    public var multiplier: Double
    /// The longest single wait.
    public var maximumDelay: Duration
    /// How much each wait varies at random, as a fraction of it (0.2: ±20 %), so that replicas
    /// retrying against the same failed dependency do not retry in step.
    public var jitter: Double

    /// The most an event waits in all across its retries; longer policies are cut at this.
    public static let maximumTotalDelay: Duration = .seconds(300)

    /// Three attempts, waiting about 100 ms and 1 s between them.
    public static let `default` = RetryPolicy(maxAttempts: 3)

    /// No retry: a failing event is dead-lettered after its first handling.
    public static let none = RetryPolicy(maxAttempts: 1)

    /// A policy of `maxAttempts` handlings with exponential backoff.
    public init(
        maxAttempts: Int, initialDelay: Duration = .milliseconds(100), multiplier: Double = 10,
        maximumDelay: Duration = .seconds(10), jitter: Double = 0.2
    ) {
        self.maxAttempts = maxAttempts
        self.initialDelay = initialDelay
        self.multiplier = multiplier
        self.maximumDelay = maximumDelay
        self.jitter = jitter
    }

    /// The wait before the attempt after failed attempt `failedAttempt` (1-based), without
    /// jitter, or `nil` when no attempt follows.
    public func nominalDelay(afterFailedAttempt failedAttempt: Int) -> Duration? {
        guard failedAttempt >= 1, failedAttempt < maxAttempts else { return nil }
        let initial = max(initialDelay.secondsValue, 0)
        let ceiling = max(maximumDelay.secondsValue, 0)
        let growth = multiplier.isFinite ? max(multiplier, 1) : 1
        var delay = initial
        for _ in 1..<failedAttempt where delay < ceiling { delay *= growth }
        return .seconds(min(delay, ceiling))
    }

    /// The wait before the next attempt with jitter applied and the total capped: `random` is
    /// a number in 0..<1 (a parameter so tests can choose it). `waitedSoFar` is what the event
    /// already waited in earlier retries.
    func delay(afterFailedAttempt failedAttempt: Int, waitedSoFar: Duration, random: Double) -> Duration? {
        guard let nominal = nominalDelay(afterFailedAttempt: failedAttempt) else { return nil }
        let spread = jitter.isFinite ? min(max(jitter, 0), 1) : 0
        let factor = 1 + spread * (2 * random - 1)
        let wanted = nominal.secondsValue * factor
        let left = Self.maximumTotalDelay.secondsValue - waitedSoFar.secondsValue
        return .seconds(max(0, min(wanted, left)))
    }
}
