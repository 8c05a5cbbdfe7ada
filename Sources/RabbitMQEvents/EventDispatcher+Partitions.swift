import Foundation
import Logging
import RabbitMQ
import ServiceLifecycle

extension EventDispatcher {
    /// Header names of the replicas' heartbeats (partitioned topology).
    enum ReplicaHeader {
        /// The replica's id.
        static let replica = "x-replica"
        /// Present (true) when the replica leaves.
        static let leaving = "x-replica-leaving"
    }

    /// The partitioned topology: announces this replica on the replicas' fanout exchange, learns
    /// the others from theirs, and consumes the partitions the membership assigns to it, each on
    /// a connection of its own. A partition that moves to another replica is released: no
    /// handler starts any more, those in flight finish (at most the shutdown deadline), then its
    /// connection is aborted, so the broker hands everything it held to the next consumer in
    /// line first, in order (see `AMQPConnection.abort()`). Runs until graceful shutdown (all
    /// partitions released) or cancellation; throws the close reason, after releasing the
    /// partitions, when its own connection closes for good.
    func dispatchPartitions(on connection: AMQPConnection, publishing: AMQPChannel) async throws {
        let me = "\(ProcessInfo.processInfo.hostName)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let heartbeat = configuration.replicaHeartbeat
        let membership = Locked(ReplicaMembership(me: me, timeout: heartbeat * 3.5))
        let channel = try await connection.openChannel()
        let presence = try await channel.queueDeclare(
            "", exclusive: true, autoDelete: true, arguments: ["x-message-ttl": .int64(Int64(heartbeat.wholeMilliseconds * 5))])
        try await channel.queueBind(presence.name, exchange: configuration.replicaExchange)
        let heartbeats = try await channel.consume(queue: presence.name, autoAck: true)
        logger.debug("listening to the other replicas", metadata: ["events.replica": .string(me)])
        let stopping = Locked(false)
        let logger = {
            var logger = self.logger
            logger[metadataKey: "events.replica"] = .string(me)
            return logger
        }()

        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask {
                    // Ends when the channel closes, after the partitions are released.
                    do {
                        for try await message in heartbeats {
                            let headers = message.properties.headers ?? [:]
                            guard let replica = headers[ReplicaHeader.replica]?.stringValue else { continue }
                            let leaving = headers[ReplicaHeader.leaving] == .bool(true)
                            membership.withLock { leaving ? $0.left(replica) : $0.heard(replica, at: .now) }
                        }
                    } catch {}
                }
                var running: [Int: PartitionConsumer] = [:]
                // Listen before taking anything: a replica joining should not grab every
                // partition for a moment only to hand most of them back.
                try? await Task.sleep(for: heartbeat * 1.5)
                var ready = false
                while !stopping.withLock({ $0 }), !Task.isCancelled {
                    // The membership's connection closed for good (recovery gave up): stop, as
                    // the single-queue dispatcher does when its connection does.
                    if connection.closeReason != nil { break }
                    let mine = membership.withLock { $0.assignment(partitions: configuration.partitions, at: .now) }
                    var started: [PartitionConsumer] = []
                    for index in mine where running[index] == nil || running[index]!.hasEnded {
                        let partition = PartitionConsumer(index: index)
                        running[index] = partition
                        started.append(partition)
                        logger.info("consuming partition", metadata: ["events.partition": "\(index)"])
                        group.addTask { await self.consume(partition, publishing: publishing, logger: logger) }
                    }
                    for (index, partition) in running where !mine.contains(index) {
                        running[index] = nil
                        logger.info("releasing partition", metadata: ["events.partition": "\(index)"])
                        group.addTask { await self.release(partition) }
                    }
                    // Announced once its new consumers wait in line: the replica that releases a
                    // partition on hearing this one hands it over directly (never to nobody,
                    // and its held deliveries first; see release).
                    for partition in started { await partition.waitUntilSubscribed(within: heartbeat * 10) }
                    await announce(me, leaving: false, on: channel)
                    if !ready {
                        ready = true
                        state.withLock { $0.consuming = true }
                        configuration.onReady?()
                    }
                    try? await Task.sleep(for: heartbeat)
                }
                // Leaving: the others take over at once instead of after the timeout, and wait
                // (single active consumer) until each partition is released here.
                await announce(me, leaving: true, on: channel)
                for partition in running.values { group.addTask { await self.release(partition) } }
                group.addTask { await channel.close() }
            }
        } onGracefulShutdown: {
            stopping.withLock { $0 = true }
        }
        if let reason = connection.closeReason, !stopping.withLock({ $0 }), !Task.isCancelled { throw reason }
    }

    private func announce(_ me: String, leaving: Bool, on channel: AMQPChannel) async {
        var headers: FieldTable = [ReplicaHeader.replica: .string(me)]
        if leaving { headers[ReplicaHeader.leaving] = true }
        let expiration = String(configuration.replicaHeartbeat.wholeMilliseconds * 3)
        do {
            try await channel.publish(
                [], exchange: configuration.replicaExchange, routingKey: "",
                properties: BasicProperties(headers: headers, deliveryMode: .transient, expiration: expiration))
        } catch {
            logger.debug("could not announce the replica", metadata: ["error": "\(error)"])
        }
    }

    /// Consumes one partition on a connection of its own until it is released (or the
    /// connection closes for good).
    private func consume(_ partition: PartitionConsumer, publishing: AMQPChannel, logger: Logger) async {
        defer { partition.ended() }
        var configuration = connectionConfiguration
        configuration.connectionName = (configuration.connectionName ?? "events") + " partition \(partition.index)"
        do {
            let connection = try await AMQPConnection.open(configuration, logger: logger)
            let channel = try await connection.openChannel()
            guard partition.attach(connection, channel) else { return await connection.abort() }
            try await channel.basicQos(prefetchCount: self.configuration.prefetch)
            let consumer = try await channel.consume(queue: self.configuration.partitionQueue(partition.index))
            partition.subscribed()
            try await consume(consumer, books: partition.books, publishing: publishing)
        } catch where partition.books.isStopping {
            // Released.
        } catch {
            logger.warning(
                "partition consumer failed; it starts again at the next heartbeat",
                metadata: ["events.partition": "\(partition.index)", "error": "\(error)"])
        }
        await partition.abort()
    }

    /// Releases a partition: nothing starts any more, the handlers in flight finish (at most the
    /// shutdown deadline), then the connection is aborted so the broker gives back the rest, in
    /// order, to the next consumer in line.
    private func release(_ partition: PartitionConsumer) async {
        partition.books.stop()
        await drain(partition.books)
        // A barrier: a quorum queue answers a consume once it applied what the channel sent
        // before, the acknowledgements of the handlers that just finished among them. Without
        // it, the abort could overtake them and those messages would be delivered again. (A
        // cancel would do the same, but it hands the partition over before what is held here
        // goes back.) The new consumer only waits in line behind the one being released.
        await partition.settleAcknowledgements(queue: configuration.partitionQueue(partition.index))
        await partition.abort()
    }
}

/// One partition this replica consumes: its books and its connection.
final class PartitionConsumer: Sendable {
    let index: Int
    let books = DispatchBooks()
    private struct State {
        var connection: AMQPConnection?
        var channel: AMQPChannel?
        var aborted = false
        var ended = false
    }
    private let state = Locked(State())

    init(index: Int) {
        self.index = index
    }

    /// Whether its consumer stopped (released, or failed): a partition still assigned then gets a
    /// new one.
    var hasEnded: Bool { state.withLock { $0.ended } }

    func ended() {
        state.withLock { $0.ended = true }
        subscription.finish()
    }

    private let (subscriptions, subscription) = AsyncStream.makeStream(of: Void.self)

    /// Its consumer is registered with the broker (active, or waiting in line).
    func subscribed() {
        subscription.finish()
    }

    /// Returns once its consumer is registered (or has ended), at most after `limit`.
    func waitUntilSubscribed(within limit: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { for await _ in self.subscriptions {} }
            group.addTask { try? await Task.sleep(for: limit) }
            await group.next()
            group.cancelAll()
        }
    }

    /// Keeps `connection` to abort on release; `false` when the release came first.
    func attach(_ connection: AMQPConnection, _ channel: AMQPChannel) -> Bool {
        state.withLock { state in
            if state.aborted { return false }
            state.connection = connection
            state.channel = channel
            return true
        }
    }

    /// Waits until the broker applied the acknowledgements sent on the partition's channel (see
    /// `EventDispatcher.release`).
    func settleAcknowledgements(queue: String) async {
        guard let channel = state.withLock({ $0.channel }) else { return }
        _ = try? await channel.consume(queue: queue)
    }

    /// Aborts its connection (once).
    func abort() async {
        let connection = state.withLock { state -> AMQPConnection? in
            state.aborted = true
            defer {
                state.connection = nil
                state.channel = nil
            }
            return state.connection
        }
        await connection?.abort()
    }
}
