import Foundation
import Logging
import Metrics
import RabbitMQ
import ServiceLifecycle

/// Publishes the events an application wrote to its outbox, in the order they were committed,
/// and deletes each only after the broker confirmed it: the second half of the transactional
/// outbox (the first is writing the event in the same database transaction as the business
/// change, e.g. `SQLiteEventStore.enqueue(_:in:)`).
///
/// ```swift
/// let relay = OutboxRelay(connection: try .init(url: url), store: store, logger: logger)
/// try await ServiceGroup(services: [relay, ...], gracefulShutdownSignals: [.sigterm], logger: logger).run()
/// ```
///
/// A crash anywhere loses nothing: an event not yet confirmed stays in the outbox and is published
/// again, with the same message id, so the consumer's inbox recognises the second copy. The relay
/// wakes on every commit to the outbox in its process and looks every ``Configuration/pollInterval``
/// for writes from other processes. Several relays may share a store: one at a time publishes
/// (the store's lease), so the order holds.
///
/// Events are published persistent and `mandatory`: one no queue is bound for stops the relay
/// (logged, retried after the poll interval) rather than being dropped.
///
/// Metrics (swift-metrics, dimension `relay`: ``Configuration/name``):
/// `rabbitmq_outbox_depth` (gauge: events waiting), `rabbitmq_outbox_lag_seconds` (gauge: how long
/// the oldest waiting event has waited), `rabbitmq_outbox_published_total` (counter) and
/// `rabbitmq_outbox_delay` (timer: from an event's commit to its confirm). Depth and lag are
/// read at most once a second, when the relay wakes.
public final class OutboxRelay: Service {
    /// How the relay publishes.
    public struct Configuration: Sendable {
        /// Most events published before waiting for their confirms.
        public var batchSize = 500
        /// How often the relay looks at the outbox when nothing woke it (for writes from other
        /// processes) and retries after a failure.
        public var pollInterval: Duration = .milliseconds(500)
        /// How long a relay's claim on the outbox lasts without being renewed, for stores that
        /// keep a lease (SQLite's: another relay takes over when it runs out, or at once when the
        /// holder's process is gone). PostgreSQL's store holds a lock for as long as the relay's
        /// connection lives instead, and ignores it.
        public var lease: Duration = .seconds(10)
        /// The `relay` dimension of its metrics.
        public var name = "outbox"

        /// The default configuration.
        public init() {}
    }

    let connectionConfiguration: AMQPConnection.Configuration
    let store: any OutboxStore
    /// The relay's configuration.
    public let configuration: Configuration
    let logger: Logger
    let owner = "\(ProcessInfo.processInfo.hostName)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    private let connection = Locked<AMQPConnection?>(nil)
    private let backlogRecordedAt = Locked<ContinuousClock.Instant?>(nil)
    private let depth: Gauge
    private let lag: Gauge
    private let published: Counter
    private let delay: Metrics.Timer

    /// Whether the relay is connected to the broker and able to publish (for a health check).
    public var isConnected: Bool { connection.withLock { $0?.isOpen ?? false } }

    /// A relay publishing `store`'s outbox on a connection of its own.
    public init(
        connection: AMQPConnection.Configuration, store: any OutboxStore, configuration: Configuration = .init(),
        logger: Logger = Logger(label: "swift-rabbitmq.outbox", factory: { _ in SwiftLogNoOpLogHandler() })
    ) {
        self.connectionConfiguration = connection
        self.store = store
        self.configuration = configuration
        self.logger = logger
        let dimensions = [("relay", configuration.name)]
        depth = Gauge(label: "rabbitmq_outbox_depth", dimensions: dimensions)
        lag = Gauge(label: "rabbitmq_outbox_lag_seconds", dimensions: dimensions)
        published = Counter(label: "rabbitmq_outbox_published_total", dimensions: dimensions)
        delay = Metrics.Timer(label: "rabbitmq_outbox_delay", dimensions: dimensions)
    }

    /// Publishes until graceful shutdown or cancellation.
    public func run() async throws {
        guard let connection = try await AMQPConnection.openUnlessShuttingDown(connectionConfiguration, logger: logger)
        else { return }
        self.connection.withLock { $0 = connection }
        let channel = PublishingChannel(connection: connection, window: max(configuration.batchSize, 1))
        let changes = store.outboxChanges()
        // Wake-ups: a commit in this process, the poll interval, or the shutdown (which ends them).
        let (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await _ in changes { wake.yield() }
                }
                group.addTask { [pollInterval = configuration.pollInterval] in
                    while !Task.isCancelled {
                        try? await Task.sleep(for: pollInterval)
                        wake.yield()
                    }
                }
                wake.yield()
                for await _ in wakeups {
                    if Task.isCancelled { break }
                    await recordBacklog()
                    // After a round that had work, look once more shortly: a commit racing the
                    // end of the round is then published without waiting for the poll.
                    if await publishPending(on: channel) {
                        group.addTask {
                            try? await Task.sleep(for: .milliseconds(100))
                            wake.yield()
                        }
                    }
                }
                group.cancelAll()
            }
        } onGracefulShutdown: {
            wake.finish()
        }
        try? await store.releaseLease(owner: owner)
        await connection.close()
    }

    /// Reads the outbox's backlog into the depth and lag gauges, at most once a second (counting
    /// a long backlog is not free, and gauges are read far less often).
    private func recordBacklog() async {
        let now = ContinuousClock.now
        guard backlogRecordedAt.withLock({ last in
            if let recorded = last, recorded.duration(to: now) < .seconds(1) { return false }
            last = now
            return true
        }) else { return }
        guard let backlog = try? await store.outboxBacklog() else { return }
        depth.record(backlog.count)
        lag.record(backlog.lag().secondsValue)
    }

    /// Publishes batches until the outbox is empty (or another relay holds it, or a publish
    /// fails: then it waits for the next poll). Returns whether it published events and ended
    /// without a failure.
    @discardableResult
    func publishPending(on publishing: PublishingChannel) async -> Bool {
        var hadWork = false
        while !Task.isCancelled {
            let channel: AMQPChannel
            do {
                channel = try await publishing.channel()
            } catch {
                logger.warning("could not open a channel to publish on", metadata: ["error": "\(error)"])
                return false
            }
            let batch: [OutboxMessage]
            do {
                batch = try await store.claimPending(owner: owner, lease: configuration.lease, limit: configuration.batchSize)
            } catch {
                logger.warning("could not read the outbox", metadata: ["error": "\(error)"])
                return false
            }
            guard !batch.isEmpty else { return hadWork }
            hadWork = true
            var published: [Int64] = []
            do {
                var confirmations: [(Int64, PublishConfirmation)] = []
                for message in batch {
                    let confirmation = try await channel.publishWithoutWaiting(
                        message.body, exchange: message.exchange, routingKey: message.routingKey, mandatory: true,
                        properties: message.properties)
                    confirmations.append((message.sequence, confirmation))
                }
                // In order: stop at the first one refused, so nothing after it is deleted first.
                for (index, (sequence, confirmation)) in confirmations.enumerated() {
                    try await confirmation.wait()
                    published.append(sequence)
                    delay.recordSeconds(max(0, Date().timeIntervalSince(batch[index].createdAt)))
                }
            } catch {
                logger.warning(
                    "outbox relay stopped at an event that was not confirmed; it retries",
                    metadata: ["error": "\(error)", "published": "\(published.count)"])
            }
            self.published.increment(by: published.count)
            do {
                if !published.isEmpty { try await store.deletePublished(published) }
            } catch {
                // Published but still in the outbox: published again later, with the same id.
                logger.warning("could not delete published events from the outbox", metadata: ["error": "\(error)"])
                return false
            }
            logger.debug("outbox events published", metadata: ["count": "\(published.count)"])
            if published.count < batch.count { return false }  // retried at the next poll
        }
        return hadWork
    }
}

/// The relay's channel in confirm mode, opened again when the broker closed it (publishing to an
/// exchange that does not exist closes the channel). Used by the relay's one loop only.
final class PublishingChannel: Sendable {
    let connection: AMQPConnection
    let window: Int
    private let current = Locked<AMQPChannel?>(nil)

    init(connection: AMQPConnection, window: Int) {
        self.connection = connection
        self.window = window
    }

    func channel() async throws -> AMQPChannel {
        if let channel = current.withLock({ $0 }), channel.isOpen { return channel }
        let channel = try await connection.openChannel()
        try await channel.confirmSelect(window: window)
        current.withLock { $0 = channel }
        return channel
    }
}
