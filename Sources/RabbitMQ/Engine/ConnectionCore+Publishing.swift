internal import CRabbitMQ

/// Publishing: `basic.publish` from commands, publisher confirms, returns, and the broker's flow
/// control.
extension ConnectionCore {
    /// Runs a batch of commands handed over by callers, in order.
    func perform(_ commands: CommandBatch) {
        // Room freed by written publishes is released once per run of one channel's publishes.
        var written: (status: ChannelStatus, count: Int)?
        func flushWritten() {
            if let (status, count) = written { status.releasePublishes(count) }
            written = nil
        }
        for command in commands {
            switch command {
            case .publish(let publish):
                // While the broker blocks us it stops reading: a write could then block this
                // thread. Hold publishes back (they are bounded by the windows) until unblocked,
                // and likewise until a recovery has re-created the channels.
                if blockedReason != nil || !heldPublishes.isEmpty || isRecovering {
                    heldPublishes.append(publish)
                } else if performPublish(publish) {
                    if let current = written, current.status !== publish.key.status { flushWritten() }
                    written = (publish.key.status, (written?.count ?? 0) + 1)
                }
            case .acknowledge(let key, let generation, let deliveryTag, let multiple, let kind):
                performAcknowledge(on: key, generation: generation, deliveryTag: deliveryTag, multiple: multiple, kind: kind)
            }
            if outbound.count >= OutboundFrames.writeThreshold { writeOutboundFrames() }
        }
        writeOutboundFrames()
        flushWritten()
        reportMessageCounts()
    }

    /// Writes the frames the engine encoded itself (see ``OutboundFrames``); a failed write
    /// loses the connection, and the publishes it carried are settled as the loss settles every
    /// unconfirmed one.
    func writeOutboundFrames() {
        guard !outbound.isEmpty else { return }
        guard let connection else {
            outbound.removeAll()
            return
        }
        writes.willWrite()
        let status = outbound.write(to: amqp_get_sockfd(connection))
        if status != AMQP_STATUS_OK.rawValue {
            tearDown(connectionLost(status: status, while: "writing publishes and acknowledgements"))
        }
    }

    /// Writes one message (method, content header and body frames), or appends it to the
    /// engine's own frames (``OutboundFrames``) for the caller to write with the rest of its
    /// batch, and settles it: a failure now, a confirm later in confirm mode. Returns true when
    /// the caller should release its room (written outside confirm mode).
    @discardableResult
    func performPublish(_ publish: PublishCommand) -> Bool {
        let status = publish.key.status
        let encodesItself = writesOwnFrames && publish.body.count <= OutboundFrames.largestCopiedBody
        // When librabbitmq writes this one, what the engine holds must leave first.
        if !encodesItself { writeOutboundFrames() }
        guard let connection, let record = channels[publish.key.number], record.id == publish.key.id, record.isUsable
        else {
            let reason = status.closeReason ?? closeReason ?? AMQPError(.channelClosed, "the channel is closed")
            publish.confirmation?.resolve(.failure(reason))
            return true
        }
        defer { scratch.reset() }
        let result: Int32
        do {
            var properties = try publish.properties.cProperties(scratch)
            var exchange = publish.exchange
            var routingKey = publish.routingKey
            if !encodesItself { writes.willWrite() }
            // The names' own UTF-8 storage, borrowed for the call: no copies per message.
            result = exchange.withUTF8 { exchange in
                routingKey.withUTF8 { routingKey in
                    publish.body.withUnsafeBytes { body in
                        let exchange = amqp_bytes_t(borrowing: exchange)
                        let routingKey = amqp_bytes_t(borrowing: routingKey)
                        guard encodesItself else {
                            return amqp_basic_publish(
                                connection, publish.key.number, exchange, routingKey, amqpBoolean(publish.mandatory), 0,
                                &properties,
                                amqp_bytes_t(len: body.count, bytes: UnsafeMutableRawPointer(mutating: body.baseAddress)))
                        }
                        var method = amqp_basic_publish_t(
                            ticket: 0, exchange: exchange, routing_key: routingKey, mandatory: amqpBoolean(publish.mandatory),
                            immediate: 0)
                        return outbound.appendPublish(
                            &method, properties: &properties, body: body, channel: publish.key.number,
                            frameMax: Int(frameMax))
                    }
                }
            }
            if encodesItself, result != AMQP_STATUS_OK.rawValue {
                // Nothing of it was written: the caller's checks missed a limit of the encoding.
                throw AMQPError(
                    .invalidArgument, "the message cannot be encoded: \(String(cString: amqp_error_string2(result)))",
                    libraryStatus: result)
            }
        } catch {
            // Validated by the caller already; kept so no path can drop a publish silently.
            publish.confirmation?.resolve(.failure(error as? AMQPError ?? AMQPError(.invalidArgument, "\(error)")))
            return true
        }
        guard result == AMQP_STATUS_OK.rawValue else {
            // Part of the message may be on the wire: the connection cannot be trusted any more.
            let error = connectionLost(status: result, while: "publishing")
            publish.confirmation?.resolve(.failure(error))
            tearDown(error)
            return true
        }
        unreportedCounts.published += 1
        record.transactionHasWork = true
        guard let confirms = record.confirms else { return true }
        let returnKey = publish.mandatory
            ? ConfirmTracker.ReturnKey(
                exchange: publish.exchange, routingKey: publish.routingKey, bodySize: publish.body.count,
                messageID: publish.properties.messageID, headers: publish.properties.headers)
            : nil
        // A publish reserved just before confirm.select has no confirmation of its own.
        confirms.record(publish, confirmation: publish.confirmation ?? PublishConfirmation(), returnKey: returnKey)
        return false
    }

    /// Puts the channel in confirm mode (`confirm.select`) with a window of at most `window`
    /// unconfirmed publishes. Again on a channel in confirm mode: only changes the window.
    ///
    /// Confirm mode applies to the publishes sent after `confirm.select`, never to those sent
    /// before it (a slow method ahead of it on the channel can hold it back while publishes go
    /// out): the broker numbers from the first publish after the method, so tracking starts when
    /// the method is written, and callers see confirm mode only once `select-ok` is in. A publish
    /// handed over in between is sent without a confirmation of its own, but counted, so the
    /// numbers of the later ones match the broker's.
    func confirmSelect(on key: ChannelKey, window: Int) async throws {
        let record = try await usableRecord(key)
        if record.confirms == nil {
            // A second call while the first is in flight sends the method again (harmless):
            // either way the caller sees confirm mode only after a select-ok.
            _ = try await send(
                on: record, AMQP_CONFIRM_SELECT_METHOD, expecting: [AMQP_CONFIRM_SELECT_OK_METHOD],
                onTransmit: { [configuration] in
                    if record.confirms == nil {
                        record.confirms = ConfirmTracker(keepsPublishes: configuration.recovery.republishUnconfirmed)
                    }
                }
            ) { _ in amqp_confirm_select_t(nowait: 0) }
        }
        record.status.enterConfirmMode(window: window)
    }

    /// `basic.ack` / `basic.nack` from the broker for published messages.
    func confirmed(_ record: ChannelRecord, tag: UInt64, multiple: Bool, nacked: Bool) {
        guard let confirms = record.confirms else {
            protocolViolation("the broker confirmed message \(tag) on channel \(record.number), which is not in confirm mode")
            return
        }
        let settled = confirms.confirm(tag: tag, multiple: multiple, nacked: nacked)
        guard settled > 0 else {
            protocolViolation("the broker confirmed message \(tag) on channel \(record.number), which awaits no such confirm")
            return
        }
        record.status.releasePublishes(settled)
        (nacked ? metrics.nacked : metrics.confirmed).increment(by: settled)
    }

    /// A mandatory message came back: fail its publish if confirm mode tracks it, otherwise
    /// offer it on the channel's returned-messages sequence.
    func returned(_ content: DeliveryContent, replyCode: UInt16, replyText: String, on record: ChannelRecord) {
        let key = ConfirmTracker.ReturnKey(
            exchange: content.exchange, routingKey: content.routingKey, bodySize: content.body.count,
            messageID: content.properties.messageID, headers: content.properties.headers)
        metrics.returned.increment()
        let error = AMQPError(
            .publishReturned, "the broker could not route the mandatory message to any queue", replyCode: replyCode,
            replyText: replyText)
        if let confirms = record.confirms, confirms.markReturned(key, error: error) { return }
        record.status.returnsContinuation.yield(
            ReturnedMessage(
                replyCode: replyCode, replyText: replyText, exchange: content.exchange, routingKey: content.routingKey,
                properties: content.properties, body: content.body))
    }

    // MARK: Blocked connections

    func connectionBlocked(reason: String) {
        blockedReason = reason
        blockedSince = clock.now
        status.update { $0.blockedReason = reason }
        logger.debug("connection blocked by the broker", metadata: ["amqp.reason": "\(reason)"])
        status.publish(.blocked(reason: reason))
        configuration.onBlocked?(reason)
    }

    func connectionUnblocked() {
        if let blockedSince { metrics.blockedTime.record(duration: blockedSince.duration(to: clock.now)) }
        blockedSince = nil
        blockedReason = nil
        status.update { $0.blockedReason = nil }
        logger.debug("connection unblocked by the broker")
        if !isRecovering { sendHeldPublishes() }
        let waiting = blockedPublishers
        blockedPublishers.removeAll()
        for publisher in waiting { publisher.continuation.resume() }
        status.publish(.unblocked)
        configuration.onUnblocked?()
    }

    /// Sends the publishes held back while the broker blocked the connection or it recovered,
    /// in order, until it blocks again.
    func sendHeldPublishes() {
        while blockedReason == nil, connection != nil, let publish = heldPublishes.popFirst() {
            if performPublish(publish) { publish.key.status.releasePublishes(1) }
            if outbound.count >= OutboundFrames.writeThreshold { writeOutboundFrames() }
        }
        writeOutboundFrames()
        reportMessageCounts()
    }

    /// Hands the per-message counts gathered since the last report to the metrics backend: one
    /// increment per batch rather than per message.
    func reportMessageCounts() {
        metrics.report(unreportedCounts)
        unreportedCounts = ConnectionMetrics.UnreportedCounts()
    }


    /// Waits until the broker unblocks the connection, at most the blocked-publish timeout.
    /// Returns at once when it is not blocked.
    func waitUntilUnblocked() async throws {
        try ensureOpen()
        guard blockedReason != nil else { return }
        let deadline = clock.now + configuration.blockedPublishTimeout
        try await waitCancellably { id, continuation in
            // Checked again: the broker may have unblocked the connection before this runs.
            guard blockedReason != nil else { return continuation.resume() }
            blockedPublishers.append((id, continuation, deadline))
        }
    }

    /// Fails the publishes that waited for `connection.unblocked` past their deadline.
    func expireBlockedPublishers(now: ContinuousClock.Instant) {
        guard blockedPublishers.contains(where: { $0.deadline <= now }) else { return }
        let error = AMQPError(
            .blockedTimeout,
            "the broker blocked the connection (\(blockedReason ?? "no reason given")) for longer than \(configuration.blockedPublishTimeout)")
        blockedPublishers.removeAll { publisher in
            guard publisher.deadline <= now else { return false }
            publisher.continuation.resume(throwing: error)
            return true
        }
    }

    /// The connection ended: fail what waits for the broker to unblock it.
    func failBlockedPublishers(_ error: AMQPError) {
        let waiting = blockedPublishers
        blockedPublishers.removeAll()
        for publisher in waiting { publisher.continuation.resume(throwing: error) }
        while let publish = heldPublishes.popFirst() {
            publish.confirmation?.resolve(.failure(error))
        }
    }
}

// MARK: - Transactions

extension ConnectionCore {
    /// `tx.select`: the first transaction holds what is published and acknowledged after it.
    func selectTransactions(on key: ChannelKey) async throws {
        let record = try await usableRecord(key)
        try await sendTransactionBoundary(
            AMQP_TX_SELECT_METHOD, expecting: AMQP_TX_SELECT_OK_METHOD, on: record, recording: .transactionsSelected,
            amqp_tx_select_t(dummy: 0))
    }

    /// `tx.commit`, unless a recovery cut the transaction: then `tx.rollback` (the part sent
    /// before the loss is gone, and the rest must not take effect alone) and
    /// ``AMQPError/Code/transactionLost``.
    func commitTransaction(on key: ChannelKey) async throws {
        let record = try await usableRecord(key)
        guard record.transactionLost else {
            try await sendTransactionBoundary(
                AMQP_TX_COMMIT_METHOD, expecting: AMQP_TX_COMMIT_OK_METHOD, on: record, amqp_tx_commit_t(dummy: 0))
            return
        }
        try await rollBack(record)
        throw AMQPError(
            .transactionLost,
            "the connection was lost and recovered during the transaction on channel \(key.number): it was rolled back; publish it again")
    }

    /// `tx.rollback`; a transaction cut by a recovery is then over too.
    func rollBackTransaction(on key: ChannelKey) async throws {
        try await rollBack(try await usableRecord(key))
    }

    private func rollBack(_ record: ChannelRecord) async throws {
        record.transactionLost = false
        try await sendTransactionBoundary(
            AMQP_TX_ROLLBACK_METHOD, expecting: AMQP_TX_ROLLBACK_OK_METHOD, on: record, amqp_tx_rollback_t(dummy: 0))
    }

    /// Sends a method that ends one transaction and starts the next (`tx.select`, `tx.commit`,
    /// `tx.rollback`): what is published and acknowledged after it is written belongs to the
    /// new transaction.
    private func sendTransactionBoundary<Method: BitwiseCopyable>(
        _ methodID: amqp_method_number_t, expecting reply: amqp_method_number_t, on record: ChannelRecord,
        recording: TopologyChange? = nil, _ method: Method
    ) async throws {
        _ = try await send(
            on: record, methodID, expecting: [reply], recording: recording,
            onTransmit: { record.transactionHasWork = false }
        ) { _ in method }
    }
}
