internal import CRabbitMQ

/// Where a recovery is.
struct RecoveryProgress {
    /// When the connection was lost (the first loss, if it was lost again while recovering).
    let lostAt: ContinuousClock.Instant
    /// Reconnect attempts made so far.
    var attempts = 0
    /// When the next attempt is due; meaningful while there is no C connection.
    var nextAttempt: ContinuousClock.Instant
}

/// Automatic recovery: after a connection is lost, reconnect (with backoff, over the endpoints)
/// and re-create the channels, the recorded topology and the consumers on the new connection.
///
/// Everything happens on the connection's thread, so the channel records, consumers and windows
/// simply carry over: the public handles never notice that the C connection underneath changed.
/// The reconnect itself (TCP, TLS, login: blocking in librabbitmq, up to the connection timeout)
/// runs on a thread of its own and hands the logged-in C connection over when it is ready, so
/// the connection's thread stays free for `close()` and for tasks that prefer it; re-creating
/// the topology is asynchronous, like any RPC, so frames keep being read meanwhile.
extension ConnectionCore {
    /// Whether the connection is recovering (calls wait and publishes are held meanwhile).
    var isRecovering: Bool {
        if case .recovering = phase { true } else { false }
    }

    /// The connection failed while open or recovering: release it, settle what cannot survive,
    /// keep what can, and schedule the next reconnect attempt.
    func beginRecovery(after error: AMQPError) {
        let progress: RecoveryProgress
        if case .recovering(let current) = phase {
            progress = current
            status.publish(.recoveryAttemptFailed(attempt: current.attempts, error))
            logger.info("connection lost again while recovering", metadata: ["amqp.reason": "\(error)"])
        } else {
            progress = RecoveryProgress(lostAt: clock.now, nextAttempt: clock.now)
            status.publish(.disconnected(error))
            logger.info("connection lost; recovering", metadata: ["amqp.reason": "\(error)"])
        }
        generation += 1  // work begun on the lost connection ignores what follows
        releaseConnection()
        status.update {
            $0.isOpen = false
            $0.isRecovering = true
            $0.blockedReason = nil
        }
        if blockedReason != nil {
            // The new connection starts unblocked; publishes waiting for that go on (and are
            // held until the recovery ends).
            blockedReason = nil
            if let blockedSince { metrics.blockedTime.record(duration: blockedSince.duration(to: clock.now)) }
            blockedSince = nil
            let waiting = blockedPublishers
            blockedPublishers.removeAll()
            for publisher in waiting { publisher.continuation.resume() }
        }
        suspendChannels(error)
        scheduleReconnect(progress, after: error)
    }

    /// Plans the next attempt after the backoff delay, or gives up when the attempts are spent.
    private func scheduleReconnect(_ progress: RecoveryProgress, after error: AMQPError) {
        var progress = progress
        if let limit = configuration.recovery.maximumAttempts, progress.attempts >= limit {
            phase = .recovering(progress)
            shutDown(
                AMQPError(
                    .recoveryFailed,
                    "the connection could not be recovered in \(progress.attempts) attempts; the last failed with: \(error.message)",
                    replyCode: error.replyCode, replyText: error.replyText, libraryStatus: error.libraryStatus))
            return
        }
        progress.nextAttempt = clock.now + configuration.recovery.jitteredDelay(forAttempt: progress.attempts + 1)
        phase = .recovering(progress)
    }

    /// Settles what the lost connection leaves behind. Open channels stay (to be opened again),
    /// with their consumers; waiting calls fail, unconfirmed publishes fail (or wait to be
    /// republished), and delivery tags so far become stale.
    private func suspendChannels(_ error: AMQPError) {
        for record in channels.values {
            record.flushDeliveries()
            guard case .open = record.phase, !record.isRecoveryChannel else {
                // Opening, closing or recovery's own: nothing to re-create.
                let closing = if case .closing = record.phase { true } else { false }
                record.terminate(first: error, rest: error, consumersEndNormally: closing)
                channels[record.number] = nil
                continue
            }
            if let incoming = record.incoming, case .get(let waiting) = incoming.origin {
                waiting.continuation.resume(throwing: error)
            }
            record.incoming = nil
            while let reply = record.pending.popFirst() { reply.continuation.resume(throwing: error) }
            for (tag, consumer) in record.consumers where consumer.cancelling {
                // Its basic.cancel died with the connection: it is cancelled now.
                consumer.deliveries.finish()
                record.consumers[tag] = nil
            }
            if let confirms = record.confirms {
                if configuration.recovery.republishUnconfirmed {
                    republishQueue.append(contentsOf: confirms.takeUnconfirmedForRepublishing())
                }
                record.status.releasePublishes(
                    confirms.failAll(
                        error.asClosed(
                            error.code,
                            "the connection was lost before the broker confirmed the message, which may or may not have reached it")
                    ))
            }
            if record.isTransactional, record.transactionHasWork { record.transactionLost = true }
            record.transactionHasWork = false
            record.tagOffset = record.highestTag
            record.generation = record.status.startNewGeneration(tagsAbove: record.highestTag)
        }
    }

    /// One reconnect attempt, to the next endpoint in turn, on a thread of its own (see
    /// ``establish(_:)``). Its outcome comes back to the actor in ``reconnectFinished(_:index:progress:generation:)``.
    func attemptReconnect() {
        guard case .recovering(var progress) = phase, connection == nil, !isReconnecting else { return }
        progress.attempts += 1
        let endpoints = configuration.endpoints
        // The first attempt goes back to the endpoint that was lost, later ones move on.
        let index = (endpointIndex + progress.attempts - 1) % endpoints.count
        let endpoint = endpoints[index]
        status.publish(.recovering(attempt: progress.attempts, endpoint: endpoint))
        logger.info(
            "reconnecting", metadata: ["amqp.endpoint": "\(endpoint)", "amqp.attempt": "\(progress.attempts)"])
        metrics.reconnectAttempts.increment()
        isReconnecting = true
        phase = .recovering(progress)
        let generation = self.generation
        startThread(name: "amqp-reconnect") { [self, progress] in
            let outcome = Result { () throws(AMQPError) in ConnectionHandOver(try establish(endpoint)) }
            Task { await self.reconnectFinished(outcome, index: index, progress: progress, generation: generation) }
        }
    }

    /// A reconnect attempt ended. If the connection was closed (or lost again) meanwhile, a new
    /// C connection is released at once; otherwise it is adopted and the channels, topology and
    /// consumers are re-created asynchronously, or, after a failure, the next attempt is planned.
    func reconnectFinished(
        _ outcome: Result<ConnectionHandOver, AMQPError>, index: Int, progress: RecoveryProgress, generation: Int
    ) {
        isReconnecting = false
        guard self.generation == generation, case .recovering = phase else {
            if case .success(let handOver) = outcome { amqp_destroy_connection(handOver.connection) }
            if case .recovering = phase { attemptReconnect() }
            return
        }
        switch outcome {
        case .success(let handOver):
            adopt(handOver.connection, endpointIndex: index)
            let generation = self.generation
            Task { await self.recreate(generation: generation, lostAt: progress.lostAt) }
        case .failure(let error):
            let endpoint = configuration.endpoints[index]
            status.publish(.recoveryAttemptFailed(attempt: progress.attempts, error))
            logger.info(
                "reconnect failed",
                metadata: ["amqp.endpoint": "\(endpoint)", "amqp.attempt": "\(progress.attempts)", "amqp.reason": "\(error)"])
            scheduleReconnect(progress, after: error)
        }
    }

    /// Re-creates, on the new connection of `generation`, the channels (with prefetch and
    /// confirm mode), the recorded topology and the consumers, then declares the connection
    /// open. Stops as soon as that connection is lost too: a later attempt starts over.
    private func recreate(generation: Int, lostAt: ContinuousClock.Instant) async {
        let userChannels = channels.values.filter { if case .open = $0.phase { true } else { false } }
            .sorted { $0.number < $1.number }
        for record in userChannels {
            guard self.generation == generation else { return }
            do { try await reopen(record) } catch { reportRecoveryFailure(error, generation) }
        }
        await recreateTopology(generation: generation)
        for record in userChannels where channels[record.number] === record {
            let plan = ResubscribePlan(
                consumers: record.consumers.sorted { $0.key < $1.key }.map { ($0.key, $0.value.prefetch) },
                channelPrefetch: record.prefetch.perConsumer)
            for step in plan.steps {
                guard self.generation == generation, channels[record.number] === record else { break }
                do {
                    switch step {
                    case .setPrefetch(let prefetch):
                        try await setPrefetch(prefetch, on: record)
                    case .consume(let tag):
                        guard let consumer = record.consumers[tag] else { continue }  // ended meanwhile
                        try await resubscribe(tag, consumer, on: record)
                    }
                } catch {
                    reportRecoveryFailure(error, generation)
                }
            }
        }
        guard self.generation == generation, case .recovering = phase else { return }
        finishRecovery(lostAt: lostAt)
    }

    /// A step of the re-creation failed: when not because the new connection was lost too, the
    /// broker refused it (it closed the channel); say so and go on without it.
    private func reportRecoveryFailure(_ error: any Error, _ generation: Int) {
        guard self.generation == generation else { return }
        let error = error as? AMQPError ?? AMQPError(.libraryFailure, "\(error)")
        logger.info("part of the topology could not be recovered", metadata: ["amqp.reason": "\(error)"])
        status.publish(.topologyRecoveryFailed(error))
    }

    /// Opens the channel again under its number, with its prefetch, and its confirm or
    /// transaction mode (a transaction open at the loss is lost with it, as a rollback).
    ///
    /// The record stays in the `open` phase meanwhile: it is the application's open channel,
    /// and a loss in the middle of reopening must keep it for the next attempt like the others.
    private func reopen(_ record: ChannelRecord) async throws {
        try await openOnBroker(record)
        for prefetch in [record.prefetch.global, record.prefetch.perConsumer].compactMap({ $0 }) {
            try await setPrefetch(prefetch, on: record)
        }
        if record.isTransactional {
            _ = try await send(on: record, AMQP_TX_SELECT_METHOD, expecting: [AMQP_TX_SELECT_OK_METHOD]) { _ in
                amqp_tx_select_t(dummy: 0)
            }
        }
        if record.confirms != nil {
            // Sequence numbers start again at 1 with the first publish after the method.
            _ = try await send(
                on: record, AMQP_CONFIRM_SELECT_METHOD, expecting: [AMQP_CONFIRM_SELECT_OK_METHOD],
                onTransmit: { [configuration] in
                    record.confirms = ConfirmTracker(keepsPublishes: configuration.recovery.republishUnconfirmed)
                }
            ) { _ in amqp_confirm_select_t(nowait: 0) }
        }
    }

    /// `basic.qos` on a channel being re-created (not recorded: the record keeps what the
    /// application set).
    private func setPrefetch(_ prefetch: ChannelRecord.Prefetch, on record: ChannelRecord) async throws {
        _ = try await send(on: record, AMQP_BASIC_QOS_METHOD, expecting: [AMQP_BASIC_QOS_OK_METHOD]) { _ in
            prefetch.qosMethod
        }
    }

    /// One recorded piece of topology, in the order recovery declares them.
    private enum TopologyItem {
        case exchange(RecordedExchange)
        case queue(RecordedQueue)
        case queueBinding(RecordedBinding)
        case exchangeBinding(RecordedBinding)

        /// A named exclusive queue: the broker may still hold it for the lost connection.
        var isExclusiveQueue: Bool {
            if case .queue(let queue) = self { queue.exclusive && !queue.isServerNamed } else { false }
        }
    }

    /// Declares the recorded exchanges, queues and bindings again, on a channel of recovery's
    /// own (a refused declare closes it; the next declare opens another).
    private func recreateTopology(generation: Int) async {
        var channel: ChannelRecord?
        // Bindings are listed once the queues are declared: a server-named queue's bindings
        // follow it to its new name.
        let listings: [() -> [TopologyItem]] = [
            { self.topology.exchanges.map { .exchange($0) } + self.topology.queues.map { .queue($0) } },
            {
                self.topology.queueBindings.map { .queueBinding($0) }
                    + self.topology.exchangeBindings.map { .exchangeBinding($0) }
            },
        ]
        for listing in listings {
            for item in listing() {
                guard self.generation == generation else { return }
                // The broker keeps a lost connection's exclusive queues until it notices that
                // connection is gone (its heartbeats time out), and refuses them meanwhile (405):
                // try again for a while rather than lose the queue and its consumers.
                let retryUntil = clock.now + configuration.rpcTimeout
                while true {
                    do {
                        let current = try await usableRecoveryChannel(channel)
                        channel = current
                        try await declareAgain(item, on: current)
                    } catch let error as AMQPError
                        where error.code == .resourceLocked && item.isExclusiveQueue && clock.now < retryUntil
                    {
                        guard self.generation == generation else { return }
                        logger.debug("exclusive queue still held by the lost connection; retrying", metadata: ["amqp.reason": "\(error)"])
                        try? await Task.sleep(for: .milliseconds(250))
                        continue
                    } catch {
                        reportRecoveryFailure(error, generation)
                    }
                    break
                }
            }
        }
        if let channel, self.generation == generation, channels[channel.number] === channel, channel.isUsable {
            channel.phase = .closing
            _ = try? await send(on: channel, AMQP_CHANNEL_CLOSE_METHOD, expecting: [AMQP_CHANNEL_CLOSE_OK_METHOD]) { arena in
                amqp_channel_close_t(
                    reply_code: UInt16(AMQP_REPLY_SUCCESS), reply_text: arena.bytes("Goodbye"), class_id: 0, method_id: 0)
            }
        }
    }

    /// `channel` if it is still open, otherwise a new channel of recovery's own.
    private func usableRecoveryChannel(_ channel: ChannelRecord?) async throws -> ChannelRecord {
        if let channel, channels[channel.number] === channel, channel.isUsable { return channel }
        guard let number = (1...max(channelMax, 1)).first(where: { channels[$0] == nil }) else {
            throw AMQPError(.channelLimitReached, "no channel number is free to recover the topology on")
        }
        let record = ChannelRecord(number: number, id: nextChannelID)
        nextChannelID += 1
        record.isRecoveryChannel = true
        channels[number] = record
        try await openOnBroker(record)
        return record
    }

    /// `channel.open` for a record in the opening phase.
    func openOnBroker(_ record: ChannelRecord) async throws {
        _ = try await send(on: record, AMQP_CHANNEL_OPEN_METHOD, expecting: [AMQP_CHANNEL_OPEN_OK_METHOD]) { _ in
            amqp_channel_open_t(out_of_band: amqp_bytes_t(len: 0, bytes: nil))
        }
    }

    private func declareAgain(_ item: TopologyItem, on channel: ChannelRecord) async throws {
        switch item {
        case .exchange(let exchange):
            _ = try await send(on: channel, AMQP_EXCHANGE_DECLARE_METHOD, expecting: [AMQP_EXCHANGE_DECLARE_OK_METHOD]) {
                try exchange.declareMethod($0, passive: false)
            }
        case .queue(let queue):
            let reply = try await send(on: channel, AMQP_QUEUE_DECLARE_METHOD, expecting: [AMQP_QUEUE_DECLARE_OK_METHOD]) {
                try queue.declareMethod($0, passive: false)
            }
            if case .queueDeclareOk(let result) = reply, result.name != queue.name {
                renameQueue(from: queue.name, to: result.name)
            }
        case .queueBinding(let binding):
            _ = try await send(on: channel, AMQP_QUEUE_BIND_METHOD, expecting: [AMQP_QUEUE_BIND_OK_METHOD]) {
                try binding.queueBindMethod($0)
            }
        case .exchangeBinding(let binding):
            _ = try await send(on: channel, AMQP_EXCHANGE_BIND_METHOD, expecting: [AMQP_EXCHANGE_BIND_OK_METHOD]) {
                try binding.exchangeBindMethod($0)
            }
        }
    }

    /// A server-named queue came back under a new name: its bindings and consumers follow it.
    private func renameQueue(from old: String, to new: String) {
        topology.renameQueue(from: old, to: new)
        for record in channels.values {
            for consumer in record.consumers.values where consumer.queue == old { consumer.queue = new }
        }
        logger.info("server-named queue renamed by recovery", metadata: ["amqp.queue": "\(old)", "amqp.new_queue": "\(new)"])
        status.publish(.queueRenamed(from: old, to: new))
    }

    /// Starts the consumer again with its tag, so deliveries keep flowing into its sequence.
    /// A stream consumer resumes after the last offset it received, not from the one it was
    /// started with (which would replay the stream, or with `next` skip what came meanwhile).
    private func resubscribe(_ tag: String, _ consumer: ChannelRecord.Consumer, on record: ChannelRecord) async throws {
        var arguments = consumer.arguments
        if let offset = consumer.lastStreamOffset, offset < .max {
            arguments["x-stream-offset"] = .int64(offset + 1)
        }
        _ = try await send(on: record, AMQP_BASIC_CONSUME_METHOD, expecting: [AMQP_BASIC_CONSUME_OK_METHOD]) { arena in
            amqp_basic_consume_t(
                ticket: 0, queue: arena.bytes(consumer.queue), consumer_tag: arena.bytes(tag), no_local: 0,
                no_ack: amqpBoolean(consumer.autoAck), exclusive: amqpBoolean(consumer.exclusive), nowait: 0,
                arguments: try arena.table(arguments))
        }
    }

    /// Everything is re-created: the connection is open again. Waiting calls go on, held
    /// publishes are sent (those to republish first).
    private func finishRecovery(lostAt: ContinuousClock.Instant) {
        phase = .open
        status.update {
            $0.isOpen = true
            $0.isRecovering = false
        }
        let duration = lostAt.duration(to: clock.now)
        let endpoint = configuration.endpoints[endpointIndex]
        logger.info("connection recovered", metadata: ["amqp.endpoint": "\(endpoint)", "amqp.duration": "\(duration)"])
        metrics.recovered(after: duration)
        status.publish(.recovered(endpoint: endpoint, duration: duration))
        let waiters = recoveryWaiters
        recoveryWaiters.removeAll()
        for waiter in waiters { waiter.continuation.resume() }
        heldPublishes.prepend(contentsOf: republishQueue)
        republishQueue.removeAll()
        sendHeldPublishes()
    }

    /// Fails the calls that waited for the recovery past their deadline.
    func expireRecoveryWaiters(now: ContinuousClock.Instant) {
        guard recoveryWaiters.contains(where: { $0.deadline <= now }) else { return }
        let error = AMQPError(
            .timeout, "the connection did not recover within \(configuration.rpcTimeout); the call was not sent")
        recoveryWaiters.removeAll { waiter in
            guard waiter.deadline <= now else { return false }
            waiter.continuation.resume(throwing: error)
            return true
        }
    }

    /// The connection closed for good: nothing waits for a recovery any more.
    func failRecoveryWaiters(_ error: AMQPError) {
        let waiters = recoveryWaiters
        recoveryWaiters.removeAll()
        for waiter in waiters { waiter.continuation.resume(throwing: error) }
        while let publish = republishQueue.popFirst() {
            publish.confirmation?.resolve(.failure(error))
        }
    }

    /// Consumers of these queues ended (cancelled by the application or the broker, or their
    /// channel closed): an auto-delete queue whose last consumer that was is gone on the broker,
    /// and recovery must not declare it again.
    func forgetIfAutoDeleted(_ queues: [String]) {
        for queue in queues {
            guard let recorded = topology.queue(named: queue), recorded.autoDelete else { continue }
            let stillConsumed = channels.values.contains { record in
                record.consumers.values.contains { $0.queue == queue }
            }
            if !stillConsumed { topology.apply(.queueDeleted(queue)) }
        }
    }
}

extension ChannelRecord.Prefetch {
    /// `basic.qos` for this setting.
    var qosMethod: amqp_basic_qos_t {
        amqp_basic_qos_t(prefetch_size: size, prefetch_count: count, global: amqpBoolean(global))
    }
}

/// A logged-in C connection on its way from the thread that made it to the connection's thread.
// @unchecked Sendable: librabbitmq's state must never be used by two threads; it is used by the
// reconnecting thread until this box is made, and by the connection's thread after the box
// arrives there (the task that carries it orders the two): never by both.
struct ConnectionHandOver: @unchecked Sendable {
    let connection: amqp_connection_state_t

    init(_ connection: amqp_connection_state_t) {
        self.connection = connection
    }
}
