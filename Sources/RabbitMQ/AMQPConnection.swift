import Logging
import Synchronization

/// A connection to a RabbitMQ broker.
///
/// ```swift
/// let connection = try await AMQPConnection.open(url: "amqp://guest:guest@localhost:5672/%2f")
/// let channel = try await connection.openChannel()
/// // ... declare, publish, consume on channels ...
/// await connection.close()
/// ```
///
/// Each connection has its own thread, which owns librabbitmq's state for it and runs its event
/// loop: it reads frames, answers the broker, sends heartbeats whatever the application does, and
/// resumes the tasks waiting for replies. Handles are `Sendable`: use one connection from as many
/// tasks as you like; the calls are serialized on the connection's thread, and calls on different
/// channels progress independently.
///
/// When the broker closes the connection (``AMQPError/replyCode`` 320 for an operator's
/// `close_connection`, for instance), or the socket fails, or heartbeats stop, the calls waiting
/// for replies fail with an ``AMQPError`` that says why, and the connection recovers: it
/// reconnects and re-creates its channels, topology and consumers (see
/// ``Configuration/Recovery``, and ``events()`` to follow it). With recovery off, or when it
/// gives up, every later call fails too, and ``closeReason`` keeps the reason.
///
/// Close connections with ``close()`` (or use ``withConnection(_:logger:_:)``). A connection
/// that is released while open is torn down without the closing handshake.
public final class AMQPConnection: Sendable {
    /// The protocol limits agreed with the broker at login.
    public struct NegotiatedParameters: Sendable, Hashable {
        /// Highest channel number.
        public var channelMax: UInt16
        /// Largest frame in bytes.
        public var frameMax: UInt32
        /// Heartbeat interval in seconds; 0 when heartbeats are off.
        public var heartbeat: UInt16
    }

    let core: ConnectionCore

    private static let connectionCounter = Atomic<Int>(0)

    private init(core: ConnectionCore) {
        self.core = core
    }

    deinit {
        core.executor.requestStop()
    }

    /// The connection's own thread as a task executor, for light work that talks to the
    /// connection all the time: a consumer loop that acknowledges each delivery, a loop that
    /// publishes.
    ///
    /// ```swift
    /// try await withTaskExecutorPreference(connection.taskExecutor) {
    ///     for try await delivery in consumer {
    ///         try process(delivery.body)  // quick, never blocking
    ///         try await delivery.ack()
    ///     }
    /// }
    /// ```
    ///
    /// A task that prefers it runs between turns of the connection's event loop, on the thread
    /// that owns the connection: deliveries reach it, and its publishes and acknowledgements
    /// reach the connection, without a thread switch or a wake-up, which is the cheapest way to
    /// move many messages (see the README's performance section). Code that would run on a
    /// cooperative thread otherwise runs there as usual, so the rules are those of an event
    /// loop: never block it (no `sleep`, no synchronous I/O, no long computation; `await`
    /// freely): while the task runs, the connection reads no frames, sends no heartbeats and
    /// serves no other channel. Heavy handlers belong on the default executor.
    public var taskExecutor: any TaskExecutor { core.taskExecutor }

    /// Suspends the calling task until `deadline`, woken by the connection's own thread: its
    /// event loop waits no longer than the earliest sleep, then resumes the sleepers.
    ///
    /// For a task on ``taskExecutor`` this is a timer without a thread of its own: a publisher
    /// that paces itself wakes once per message, on the connection's thread, where
    /// `Task.sleep` wakes libdispatch's timer thread and then the connection's.
    ///
    /// ```swift
    /// try await withTaskExecutorPreference(connection.taskExecutor) {
    ///     var due = ContinuousClock.now
    ///     for reading in readings {
    ///         try await connection.sleep(until: due)
    ///         try await channel.publish(reading, routingKey: "sensor.readings")
    ///         due += .milliseconds(10)
    ///     }
    /// }
    /// ```
    ///
    /// The resolution is the event loop's: a millisecond (a sleep never ends early). A deadline
    /// that has passed returns at the loop's next turn.
    ///
    /// It works in every state of the connection, closed or recovering included: the thread
    /// lives as long as the connection value.
    ///
    /// - Throws: `CancellationError` as soon as the task is cancelled.
    nonisolated(nonsending) public func sleep(until deadline: ContinuousClock.Instant) async throws {
        try await core.executor.sleep(until: deadline)
    }

    /// Suspends the calling task for `duration`; see ``sleep(until:)``.
    nonisolated(nonsending) public func sleep(for duration: Duration) async throws {
        try await core.executor.sleep(until: .now + duration)
    }

    /// Opens a connection: TCP (or TLS) connect, AMQP handshake and login, all within
    /// ``Configuration/connectionTimeout``.
    ///
    /// - Parameters:
    ///   - configuration: Where and how to connect.
    ///   - logger: Where the connection logs. Nothing is logged above `debug` by default, and
    ///     never a password.
    /// - Throws: ``AMQPError``: ``AMQPError/Code/accessRefused`` for bad credentials,
    ///   ``AMQPError/Code/connectionFailed`` when the broker cannot be reached,
    ///   ``AMQPError/Code/timeout`` when the connect or the handshake takes too long.
    public static func open(
        _ configuration: Configuration, logger: Logger = Logger(label: "swift-rabbitmq", factory: { _ in SwiftLogNoOpLogHandler() })
    ) async throws -> AMQPConnection {
        let giveUp = ContinuousClock.now + configuration.recovery.firstConnectionRetry
        var attempt = 1
        while true {
            let number = connectionCounter.wrappingAdd(1, ordering: .relaxed).newValue
            var logger = logger
            logger[metadataKey: "amqp.connection"] = "\(number)"
            let core = ConnectionCore(configuration: configuration, logger: logger)
            ConnectionLoop.start(core, name: "amqp-connection-\(number)")
            let connection = AMQPConnection(core: core)
            do {
                try await core.connect()
                return connection
            } catch let error as AMQPError where error.code != .accessRefused {
                let delay = configuration.recovery.jitteredDelay(forAttempt: attempt)
                guard ContinuousClock.now + delay < giveUp else { throw error }
                logger.info(
                    "could not connect; retrying",
                    metadata: ["amqp.attempt": "\(attempt)", "amqp.reason": "\(error)", "amqp.delay": "\(delay)"])
                attempt += 1
                try await Task.sleep(for: delay)
            }
        }
    }

    /// Opens a connection to the broker an AMQP URI names (see
    /// ``Configuration/init(url:)`` for the URI format).
    public static func open(
        url: String, connectionName: String? = nil,
        logger: Logger = Logger(label: "swift-rabbitmq", factory: { _ in SwiftLogNoOpLogHandler() })
    ) async throws -> AMQPConnection {
        var configuration = try Configuration(url: url)
        configuration.connectionName = connectionName
        return try await open(configuration, logger: logger)
    }

    /// Opens a connection, runs `body` with it, and closes it, whether `body` returns or throws.
    public static func withConnection<Result: Sendable>(
        _ configuration: Configuration,
        logger: Logger = Logger(label: "swift-rabbitmq", factory: { _ in SwiftLogNoOpLogHandler() }),
        _ body: (AMQPConnection) async throws -> Result
    ) async throws -> Result {
        let connection = try await open(configuration, logger: logger)
        return try await closing(connection, afterwards: { await $0.close() }, body)
    }

    /// Opens a channel, on the lowest channel number that is free.
    ///
    /// - Throws: ``AMQPError/Code/channelLimitReached`` when every negotiated channel is in
    ///   use, or the connection's close reason when it is closed.
    public func openChannel() async throws -> AMQPChannel {
        let key = try await core.openChannel()
        return AMQPChannel(connection: self, key: key)
    }

    /// Opens a channel, runs `body` with it, and closes it, whether `body` returns or throws.
    public func withChannel<Result: Sendable>(_ body: (AMQPChannel) async throws -> Result) async throws -> Result {
        let channel = try await openChannel()
        return try await closing(channel, afterwards: { await $0.close() }, body)
    }

    /// Closes the connection: sends `connection.close`, waits for the broker's `close-ok` (at
    /// most ``Configuration/closeTimeout``), then releases the socket. Calls still waiting for
    /// replies fail with ``AMQPError/Code/connectionClosed``.
    ///
    /// Idempotent, and it never throws: when it returns the connection is closed, whatever
    /// state it was in.
    public func close() async {
        await core.close()
    }

    /// Drops the connection at once, without the closing handshake: the socket closes and
    /// nothing more is sent, as if the network had failed, and no recovery follows. Calls still
    /// waiting fail with ``AMQPError/Code/connectionClosed``.
    ///
    /// The broker then handles it as a lost connection, which matters for ordered consumers:
    /// every unacknowledged delivery goes back to its queue in the same step that removes the
    /// connection's consumers, so on a single-active-consumer quorum queue the next consumer gets
    /// them first, in their order (measured on RabbitMQ 3.10 and 4.0). Cancelling the consumer,
    /// or closing its channel, first activates the next consumer, which then gets the messages
    /// behind them first.
    ///
    /// Idempotent, and it never throws.
    public func abort() async {
        await core.abort()
    }

    /// Whether the connection is open (not recovering, closing or closed).
    public var isOpen: Bool { core.status.snapshot.isOpen }

    /// Why the connection closed, once it has: the broker's reply code and text, a socket error,
    /// missed heartbeats, or the application's own ``close()``.
    public var closeReason: AMQPError? { core.status.snapshot.closeReason }

    /// The limits agreed with the broker at login.
    public var negotiated: NegotiatedParameters { core.status.snapshot.negotiated }

    /// What the broker said about itself at login (`product`, `version`, `capabilities`, ...).
    public var serverProperties: FieldTable { core.status.snapshot.serverProperties }

    /// The broker's reason while it blocks this connection's publishers (a memory or disk alarm),
    /// `nil` otherwise.
    public var blockedReason: String? { core.status.blockedReason }

    /// The configuration the connection was opened with.
    public var configuration: Configuration { core.configuration }
}

/// Runs `body` with `resource`, then `close` it, whether `body` returns or throws.
private func closing<Resource, Result>(
    _ resource: Resource, afterwards close: (Resource) async -> Void, _ body: (Resource) async throws -> Result
) async throws -> Result {
    do {
        let result = try await body(resource)
        await close(resource)
        return result
    } catch {
        await close(resource)
        throw error
    }
}
