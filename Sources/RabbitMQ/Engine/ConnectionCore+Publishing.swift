internal import CRabbitMQ

/// Publishing: `basic.publish`, publisher confirms, returns, and the broker's flow control.
extension ConnectionCore {
    /// Publishes a message. In confirm mode it first waits for room in the channel's window of
    /// unconfirmed messages, and returns the message's confirmation; it always waits while the
    /// broker blocks the connection. Returns once librabbitmq has written the frames.
    func publish(
        on key: ChannelKey, exchange: String, routingKey: String, mandatory: Bool, properties: BasicProperties,
        body: [UInt8], requireConfirmMode: Bool = false
    ) async throws -> PublishConfirmation? {
        var record = try usableRecord(key)
        try properties.validate(frameMax: frameMax)
        if requireConfirmMode, record.confirms == nil {
            throw AMQPError(.invalidArgument, "channel \(key.number) is not in confirm mode: call confirmSelect() first")
        }
        // Back-pressure, re-checked after every wait since the channel may close meanwhile.
        while true {
            if blockedReason != nil {
                try await waitUntilUnblocked()
            } else if let confirms = record.confirms, confirms.isFull {
                try await withCheckedThrowingContinuation { confirms.waitForRoom($0) }
            } else {
                break
            }
            record = try usableRecord(key)
        }
        guard let connection else { throw closeReason ?? AMQPError(.connectionClosed, "the connection is closed") }

        let arena = CArena()
        var cProperties = try properties.cProperties(arena)
        let result = body.withUnsafeBytes { bytes in
            amqp_basic_publish(
                connection, key.number, arena.bytes(exchange), arena.bytes(routingKey), amqpBoolean(mandatory), 0,
                &cProperties, amqp_bytes_t(len: bytes.count, bytes: UnsafeMutableRawPointer(mutating: bytes.baseAddress)))
        }
        withExtendedLifetime(arena) {}
        guard result == AMQP_STATUS_OK.rawValue else {
            // Part of the message may be on the wire: the connection cannot be trusted any more.
            let error = connectionLost(status: result, while: "publishing")
            tearDown(error)
            throw error
        }
        guard let confirms = record.confirms else { return nil }
        let returnKey = mandatory
            ? ConfirmTracker.ReturnKey(
                exchange: exchange, routingKey: routingKey, bodySize: body.count, messageID: properties.messageID)
            : nil
        return confirms.record(returnKey: returnKey)
    }

    /// Puts the channel in confirm mode (`confirm.select`) with a window of at most `window`
    /// unconfirmed publishes. Again on a channel in confirm mode: only changes the window.
    func confirmSelect(on key: ChannelKey, window: Int) async throws {
        let record = try usableRecord(key)
        if let confirms = record.confirms {
            confirms.window = max(window, 1)
            return
        }
        // Numbering starts with the first publish after confirm.select, which the broker
        // handles before anything sent later: track from now on.
        record.confirms = ConfirmTracker(window: window)
        _ = try await send(on: record, AMQP_CONFIRM_SELECT_METHOD, expecting: [AMQP_CONFIRM_SELECT_OK_METHOD]) { _ in
            amqp_confirm_select_t(nowait: 0)
        }
    }

    /// `basic.ack` / `basic.nack` from the broker for published messages.
    func confirmed(_ record: ChannelRecord, tag: UInt64, multiple: Bool, nacked: Bool) {
        guard let confirms = record.confirms, confirms.confirm(tag: tag, multiple: multiple, nacked: nacked) else {
            protocolViolation("the broker confirmed message \(tag) on channel \(record.number), which awaits no such confirm")
            return
        }
    }

    /// A mandatory message came back: fail its publish if confirm mode tracks it, otherwise
    /// offer it on the channel's returned-messages sequence.
    func returned(_ content: DeliveryContent, replyCode: UInt16, replyText: String, on record: ChannelRecord) {
        let key = ConfirmTracker.ReturnKey(
            exchange: content.exchange, routingKey: content.routingKey, bodySize: content.body.count,
            messageID: content.properties.messageID)
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
        status.update { $0.blockedReason = reason }
        logger.debug("connection blocked by the broker", metadata: ["amqp.reason": "\(reason)"])
        configuration.onBlocked?(reason)
    }

    func connectionUnblocked() {
        blockedReason = nil
        status.update { $0.blockedReason = nil }
        logger.debug("connection unblocked by the broker")
        let waiting = blockedPublishers
        blockedPublishers.removeAll()
        for publisher in waiting { publisher.continuation.resume() }
        configuration.onUnblocked?()
    }

    private func waitUntilUnblocked() async throws {
        let deadline = clock.now + configuration.blockedPublishTimeout
        try await withCheckedThrowingContinuation { blockedPublishers.append(($0, deadline)) }
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

    func failBlockedPublishers(_ error: AMQPError) {
        let waiting = blockedPublishers
        blockedPublishers.removeAll()
        for publisher in waiting { publisher.continuation.resume(throwing: error) }
    }
}
