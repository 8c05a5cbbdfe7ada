extension AMQPConnection.Configuration {
    /// A broker address: one node of a cluster, say.
    public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
        /// Host name or IP address (IPv6 without brackets).
        public var host: String
        /// TCP port.
        public var port: Int

        /// Creates an endpoint.
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    /// Automatic recovery: what the connection does when it is lost (the broker restarts or
    /// closes it, the network fails, heartbeats stop) rather than closed by the application.
    ///
    /// With recovery on (the default) the connection reconnects, trying ``delay(forAttempt:)``
    /// apart the endpoints in turn (each attempt bounded by
    /// ``AMQPConnection/Configuration/connectionTimeout``: lower it when endpoints may be
    /// unreachable rather than refusing), and then re-creates what the application set up on it:
    /// channels with their prefetch and confirm mode, the exchanges, queues and bindings it
    /// declared (server-named queues get new names, reported as
    /// ``AMQPConnection/Event/queueRenamed(from:to:)``), and its consumers, whose sequences go on
    /// yielding. ``AMQPConnection/events()`` reports each step.
    ///
    /// While it recovers:
    /// - synchronous calls (declares, `openChannel`, ...) wait for the recovery, at most
    ///   ``AMQPConnection/Configuration/rpcTimeout``;
    /// - publishes wait (bounded by the channel's window) and are sent once it is recovered;
    /// - publishes the broker had not confirmed when the connection died fail with the
    ///   connection's error (their outcome is unknown), unless ``republishUnconfirmed`` is on;
    /// - deliveries received before the loss can no longer be acknowledged (the broker
    ///   redelivers them, flagged as redelivered): their `ack()` throws
    ///   ``AMQPError/Code/staleDelivery``, and those not yet handed out by a consumer sequence
    ///   are skipped.
    public struct Recovery: Sendable, Hashable {
        /// Whether the connection recovers at all. When off, a lost connection is closed for good
        /// and every call fails with the reason.
        public var isEnabled = true
        /// The delay before the first attempt; each later attempt waits twice as long as the
        /// one before, up to ``maximumDelay``.
        public var initialDelay: Duration = .milliseconds(100)
        /// The longest wait between two attempts.
        public var maximumDelay: Duration = .seconds(2)
        /// Each delay is varied at random by up to this fraction (0.2: ±20 %), so that many
        /// clients that lost the same broker do not all come back at the same instant.
        public var jitter: Double = 0.2
        /// How many attempts before giving up and closing the connection for good; `nil` tries
        /// for ever.
        public var maximumAttempts: Int?
        /// Republish, after recovery, the messages that were published in confirm mode and not
        /// yet confirmed when the connection died (the same body and properties, so the same
        /// message id). The broker may then hold two copies of some of them (one that reached it
        /// before the loss, unconfirmed): consumers must tolerate duplicates (de-duplicate on the
        /// message id). Off by default: such publishes fail with the connection's error instead.
        public var republishUnconfirmed = false
        /// How long ``AMQPConnection/open(_:logger:)`` keeps trying when the first connection
        /// fails (a broker that is still starting, as in a container deployment), with the same
        /// backoff as recovery. `.zero`, the default, fails at the first failure. A refused login
        /// (wrong credentials or virtual host) fails at once either way.
        public var firstConnectionRetry: Duration = .zero

        /// Recovery with the defaults: on, 100 ms doubling up to 2 s, for ever.
        public init() {}

        /// Recovery turned off.
        public static var disabled: Recovery {
            var recovery = Recovery()
            recovery.isEnabled = false
            return recovery
        }

        /// How long to wait before attempt `attempt` (1 for the first), jitter not included.
        public func delay(forAttempt attempt: Int) -> Duration {
            var delay = initialDelay
            for _ in 1..<max(attempt, 1) {
                delay *= 2
                if delay >= maximumDelay { return maximumDelay }
            }
            return min(delay, maximumDelay)
        }

        /// ``delay(forAttempt:)`` varied by the jitter.
        func jitteredDelay(forAttempt attempt: Int) -> Duration {
            let base = delay(forAttempt: attempt)
            guard jitter > 0 else { return base }
            let factor = 1 + Double.random(in: -jitter...jitter)
            return base * max(factor, 0)
        }
    }

    /// Every endpoint to connect to: ``host`` and ``port`` first, then ``alternateEndpoints``.
    public var endpoints: [Endpoint] {
        [Endpoint(host: host, port: port)] + alternateEndpoints
    }
}

extension AMQPConnection {
    /// Something that happened to a connection; see ``AMQPConnection/events()``.
    public enum Event: Sendable, Hashable {
        /// The connection was lost; recovery follows when it is enabled.
        case disconnected(AMQPError)
        /// Reconnect attempt `attempt` (1 for the first) to `endpoint` is starting.
        case recovering(attempt: Int, endpoint: AMQPConnection.Configuration.Endpoint)
        /// A reconnect attempt failed; another follows after the backoff delay.
        case recoveryAttemptFailed(attempt: Int, AMQPError)
        /// A server-named queue was re-declared during recovery and got a new name. Bindings and
        /// consumers of the connection were moved to it.
        case queueRenamed(from: String, to: String)
        /// Part of the recorded topology could not be re-created (the broker refused a declare
        /// or a consumer); recovery went on without it.
        case topologyRecoveryFailed(AMQPError)
        /// The connection is usable again: reconnected to `endpoint`, topology and consumers
        /// re-created, `duration` after it was lost.
        case recovered(endpoint: AMQPConnection.Configuration.Endpoint, duration: Duration)
        /// The broker blocked the connection's publishers (memory or disk alarm).
        case blocked(reason: String)
        /// The broker unblocked the connection.
        case unblocked
        /// The connection is closed for good (by the application, or recovery gave up or is
        /// off). The last event of every sequence.
        case closed(AMQPError)
    }

    /// The connection's events (disconnects, recovery, blocking, close) from now on, as an
    /// asynchronous sequence. Each call returns a new, independent sequence; it keeps the
    /// newest 256 events its reader has not taken yet, and ends after ``Event/closed(_:)``.
    ///
    /// ```swift
    /// Task {
    ///     for await event in connection.events() {
    ///         if case .recovered(let endpoint, let duration) = event { print("back on \(endpoint) after \(duration)") }
    ///     }
    /// }
    /// ```
    public func events() -> AsyncStream<Event> {
        core.status.subscribe()
    }

    /// Whether the connection is recovering: lost, and reconnecting or re-creating its topology.
    public var isRecovering: Bool { core.status.snapshot.isRecovering }
}
