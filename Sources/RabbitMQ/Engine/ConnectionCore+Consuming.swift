internal import CRabbitMQ

/// Consuming: consumers, deliveries and their acknowledgements.
extension ConnectionCore {
    /// Starts a consumer (`basic.consume`) and returns the sequence its deliveries go to.
    func consume(
        on key: ChannelKey, queue: String, consumerTag: String, autoAck: Bool, exclusive: Bool, arguments: FieldTable
    ) async throws -> (tag: String, deliveries: DeliveryReader) {
        var record = try await usableRecord(key)
        if !autoAck, record.prefetch == (nil, nil), let count = configuration.defaultPrefetch {
            // Without a prefetch the broker would push the whole queue into the sequence.
            let prefetch = ChannelRecord.Prefetch(count: count, size: 0, global: false)
            _ = try await send(
                on: record, AMQP_BASIC_QOS_METHOD, expecting: [AMQP_BASIC_QOS_OK_METHOD],
                recording: .prefetchSet(prefetch)) { _ in prefetch.qosMethod }
            record = try await usableRecord(key)
        }
        // Deliveries may follow consume-ok in the same read, before the awaiting task runs:
        // the sequence must exist first, so the tag is chosen here rather than by the broker.
        let tag = consumerTag.isEmpty ? "swift-rabbitmq-\(key.number)-\(nextConsumerNumber)" : consumerTag
        if consumerTag.isEmpty { nextConsumerNumber += 1 }
        guard record.consumers[tag] == nil else {
            // The broker would close the whole connection (530) for a duplicate tag.
            throw AMQPError(.invalidArgument, "the consumer tag '\(tag)' is already in use on channel \(key.number)")
        }
        let deliveries = DeliveryQueue()
        // Made now, so that a cancelled or failed start below drops the last reader at once.
        let reader = DeliveryReader(deliveries)
        record.consumers[tag] = ChannelRecord.Consumer(
            deliveries: deliveries, autoAck: autoAck, queue: queue, exclusive: exclusive, arguments: arguments,
            prefetch: record.prefetch.perConsumer)
        do {
            _ = try await send(on: record, AMQP_BASIC_CONSUME_METHOD, expecting: [AMQP_BASIC_CONSUME_OK_METHOD]) { arena in
                amqp_basic_consume_t(
                    ticket: 0, queue: arena.bytes(queue), consumer_tag: arena.bytes(tag), no_local: 0,
                    no_ack: amqpBoolean(autoAck), exclusive: amqpBoolean(exclusive), nowait: 0,
                    arguments: try arena.table(arguments))
            }
        } catch is CancellationError {
            // The caller was cancelled, perhaps after basic.consume went out: cancel it after
            // its reply (RabbitMQ answers a cancel of an unknown tag too), giving back whatever
            // arrives meanwhile.
            deliveries.finish(throwing: CancellationError())
            if let consumer = record.consumers[tag], !consumer.cancelling {
                consumer.cancelling = true
                Task { await self.sendCancel(tag, on: key) }
            }
            throw CancellationError()
        } catch {
            record.consumers[tag] = nil
            deliveries.finish(throwing: error)
            throw error
        }
        // A consumer whose sequence is abandoned (loop left, task cancelled) is cancelled on the
        // broker, so its messages go to other consumers. `self` is held strongly, not weakly: a
        // weak reference would give the core a side table, sending every retain and release of
        // it (several per message) down the runtime's slow path. The cycle this makes (core,
        // consumer record, delivery queue, this closure) ends when the sequence ends: the queue
        // drops the closure once it has run or ended, and the core finishes every consumer's
        // sequence when a channel closes or the connection shuts down.
        deliveries.setOnCancel { [self] in
            Task { await self.cancelConsumer(on: key, tag: tag) }
        }
        return (tag, reader)
    }

    /// Cancels a consumer (`basic.cancel`); its sequence ends when `cancel-ok` arrives. Nothing
    /// happens for an unknown tag or a closed channel.
    func cancelConsumer(on key: ChannelKey, tag: String) async {
        guard let record = try? await usableRecord(key), let consumer = record.consumers[tag], !consumer.cancelling else {
            return
        }
        consumer.cancelling = true
        await sendCancel(tag, on: key)
    }

    /// `basic.cancel` for a consumer marked as cancelling; the consumer goes at `cancel-ok`.
    func sendCancel(_ tag: String, on key: ChannelKey) async {
        guard let record = try? await usableRecord(key) else { return }
        _ = try? await send(on: record, AMQP_BASIC_CANCEL_METHOD, expecting: [AMQP_BASIC_CANCEL_OK_METHOD]) { arena in
            amqp_basic_cancel_t(consumer_tag: arena.bytes(tag), nowait: 0)
        }
    }

    /// Hands a complete delivery to its consumer.
    func deliver(_ content: consuming DeliveryContent, on record: ChannelRecord) {
        let tag = content.consumerTag ?? ""
        guard let consumer = record.consumer(tag: tag) else {
            // Cannot happen with a well-behaved broker (deliveries stop at cancel-ok); if it
            // does, the channel's close will requeue it.
            logger.debug("delivery for an unknown consumer", metadata: ["amqp.consumer": "\(tag)"])
            return
        }
        if consumer.cancelling || consumer.sequenceEnded {
            // In flight when basic.cancel was sent, or nobody reads the sequence any more: give
            // it back rather than to nobody.
            if !consumer.autoAck { giveBack(content, on: record) }
            return
        }
        if !consumer.autoAck { record.status.deliveryOutstanding(content.deliveryTag) }
        // A stream's deliveries carry their offset: recovery resumes after the last one.
        if let headers = content.properties.headers, let offset = headers["x-stream-offset"]?.int64Value {
            consumer.lastStreamOffset = offset
        }
        unreportedCounts.delivered += 1
        // Handed over at the end of the loop's turn, with the rest of the batch.
        consumer.append(content)
        if !record.hasUnflushedDeliveries {
            record.hasUnflushedDeliveries = true
            channelsWithDeliveries.append(record)
        }
    }

    /// Hands a delivery nobody will handle back to the broker: `basic.nack` with requeue (it did
    /// not fail, so it must not count as an attempt where brokers count rejects). One already
    /// counted as outstanding is taken off first (and left alone if it is not outstanding any
    /// more), so the application can never acknowledge it too.
    func giveBack(_ content: DeliveryContent, on record: ChannelRecord, outstanding: Bool = false) {
        if outstanding {
            guard (try? record.status.takeOutstanding(
                content.deliveryTag, multiple: false, generation: content.generation, channel: record.number)) != nil
            else { return }
        }
        guard let connection else { return }
        writes.willWrite()
        let status = amqp_basic_nack(connection, record.number, record.brokerTag(content.deliveryTag), 0, 1)
        if status != AMQP_STATUS_OK.rawValue { tearDown(connectionLost(status: status, while: "giving back")) }
    }

    /// `basic.cancel` from the broker: the queue was deleted, or similar. The sequence ends with
    /// the reason; the broker expects `cancel-ok` unless it said `nowait`.
    func consumerCancelledByBroker(_ record: ChannelRecord, tag: String, replyExpected: Bool) {
        let consumer = record.consumers.removeValue(forKey: tag)
        if let queue = consumer?.queue { forgetIfAutoDeleted([queue]) }
        consumer?.flush()
        consumer?.deliveries.finish(
            throwing: AMQPError(
                .consumerCancelled,
                "the broker cancelled consumer '\(tag)' on channel \(record.number) (its queue was deleted or became unavailable)"))
        logger.debug("consumer cancelled by the broker", metadata: ["amqp.consumer": "\(tag)"])
        if replyExpected {
            let arena = CArena()
            sendWithoutReply(AMQP_BASIC_CANCEL_OK_METHOD, amqp_basic_cancel_ok_t(consumer_tag: arena.bytes(tag)), on: record.number)
            withExtendedLifetime(arena) {}
        }
    }

    /// Sends an acknowledgement the caller already checked against the channel's outstanding
    /// tags, or appends it to the engine's own frames (``OutboundFrames``), which
    /// ``perform(_:)`` writes at the end of the batch. If the channel closed since, it is
    /// dropped: the broker redelivers the message.
    /// An acknowledgement of an earlier generation (checked by the caller just before a
    /// recovery) is dropped too: its tag would acknowledge another message now.
    func performAcknowledge(
        on key: ChannelKey, generation: Int, deliveryTag: UInt64, multiple: Bool, kind: AcknowledgementKind
    ) {
        guard let connection, let record = channels[key.number], record.id == key.id, record.isUsable,
            record.generation == generation
        else { return }
        let status: Int32
        let deliveryTag = record.brokerTag(deliveryTag)
        if writesOwnFrames {
            // Appended to the batch's frames, written by the caller (``perform(_:)``).
            let frameMax = Int(frameMax)
            switch kind {
            case .ack:
                var method = amqp_basic_ack_t(delivery_tag: deliveryTag, multiple: amqpBoolean(multiple))
                status = outbound.appendMethod(AMQP_BASIC_ACK_METHOD, &method, channel: key.number, frameMax: frameMax)
            case .nack(let requeue):
                var method = amqp_basic_nack_t(
                    delivery_tag: deliveryTag, multiple: amqpBoolean(multiple), requeue: amqpBoolean(requeue))
                status = outbound.appendMethod(AMQP_BASIC_NACK_METHOD, &method, channel: key.number, frameMax: frameMax)
            case .reject(let requeue):
                var method = amqp_basic_reject_t(delivery_tag: deliveryTag, requeue: amqpBoolean(requeue))
                status = outbound.appendMethod(AMQP_BASIC_REJECT_METHOD, &method, channel: key.number, frameMax: frameMax)
            }
            // Three integers always encode: a failure here is a broken invariant, not input.
            precondition(status == AMQP_STATUS_OK.rawValue, "swift-rabbitmq: an acknowledgement did not encode (\(status))")
        } else {
            writes.willWrite()
            switch kind {
            case .ack:
                status = amqp_basic_ack(connection, key.number, deliveryTag, amqpBoolean(multiple))
            case .nack(let requeue):
                status = amqp_basic_nack(connection, key.number, deliveryTag, amqpBoolean(multiple), amqpBoolean(requeue))
            case .reject(let requeue):
                status = amqp_basic_reject(connection, key.number, deliveryTag, amqpBoolean(requeue))
            }
        }
        if status != AMQP_STATUS_OK.rawValue {
            tearDown(connectionLost(status: status, while: "acknowledging"))
        } else {
            unreportedCounts.acknowledgementSent(kind)
            record.transactionHasWork = true
        }
    }

    /// `basic.recover`: the broker redelivers every unacknowledged message of the channel (with
    /// new tags), so the old tags stop being acknowledgeable now.
    func recover(on key: ChannelKey, requeue: Bool) async throws {
        let record = try await usableRecord(key)
        record.status.forgetOutstandingTags()
        _ = try await send(on: record, AMQP_BASIC_RECOVER_METHOD, expecting: [AMQP_BASIC_RECOVER_OK_METHOD]) { _ in
            amqp_basic_recover_t(requeue: amqpBoolean(requeue))
        }
    }
}
