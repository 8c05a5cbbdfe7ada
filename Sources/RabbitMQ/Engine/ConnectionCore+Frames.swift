internal import CRabbitMQ

/// Dispatching the frames the loop reads: by channel, then by method.
extension ConnectionCore {
    func handle(_ frame: amqp_frame_t) {
        switch Int32(frame.frame_type) {
        case AMQP_FRAME_METHOD:
            if frame.channel == 0 {
                handleConnectionMethod(frame.payload.method)
            } else {
                handleChannelMethod(frame.payload.method, channel: frame.channel)
            }
        case AMQP_FRAME_HEADER, AMQP_FRAME_BODY:
            handleContent(frame)
        case AMQP_FRAME_HEARTBEAT:
            break
        default:
            protocolViolation("the broker sent a frame of unknown type \(frame.frame_type)")
        }
    }

    func handleConnectionMethod(_ method: amqp_method_t) {
        switch method.id {
        case AMQP_CONNECTION_CLOSE_METHOD:
            let close = method.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            let error = AMQPError(
                .connectionClosed, "the broker closed the connection", replyCode: close.reply_code,
                replyText: String(copying: close.reply_text), classID: close.class_id, methodID: close.method_id)
            sendWithoutReply(AMQP_CONNECTION_CLOSE_OK_METHOD, amqp_connection_close_ok_t(dummy: 0), on: 0)
            tearDown(error)
        case AMQP_CONNECTION_CLOSE_OK_METHOD:
            guard case .closing = phase else {
                protocolViolation("the broker sent connection.close-ok without a close")
                return
            }
            shutDown(closeReason ?? AMQPError(.connectionClosed, "the connection was closed by the application"))
        case AMQP_CONNECTION_BLOCKED_METHOD:
            let blocked = method.decoded.assumingMemoryBound(to: amqp_connection_blocked_t.self).pointee
            connectionBlocked(reason: String(copying: blocked.reason))
        case AMQP_CONNECTION_UNBLOCKED_METHOD:
            connectionUnblocked()
        default:
            protocolViolation("the broker sent \(method.id.methodName) on channel 0")
        }
    }

    func handleChannelMethod(_ method: amqp_method_t, channel number: UInt16) {
        guard let record = channel(number) else {
            protocolViolation("the broker sent \(method.id.methodName) on channel \(number), which is not open")
            return
        }
        if isClosing { return }  // the broker answers nothing but close-ok now
        if case .draining = record.phase {
            if method.id == AMQP_CHANNEL_CLOSE_OK_METHOD { channels[number] = nil }
            return
        }
        guard record.incoming == nil else {
            protocolViolation("the broker sent \(method.id.methodName) on channel \(number) in the middle of a message")
            return
        }
        switch method.id {
        case AMQP_BASIC_DELIVER_METHOD:
            let deliver = method.decoded.assumingMemoryBound(to: amqp_basic_deliver_t.self).pointee
            guard let tag = record.applicationTag(deliver.delivery_tag) else {
                tagOutOfSequence(deliver.delivery_tag, on: record)
                return
            }
            record.incoming = IncomingContent(
                origin: .deliver,
                content: DeliveryContent(
                    deliveryTag: tag, redelivered: deliver.redelivered != 0,
                    exchange: record.recentStrings.string(deliver.exchange),
                    routingKey: record.recentStrings.string(deliver.routing_key),
                    consumerTag: record.recentStrings.string(deliver.consumer_tag), generation: record.generation))
        case AMQP_BASIC_ACK_METHOD:
            let ack = method.decoded.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
            confirmed(record, tag: ack.delivery_tag, multiple: ack.multiple != 0, nacked: false)
        case AMQP_BASIC_NACK_METHOD:
            let nack = method.decoded.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
            confirmed(record, tag: nack.delivery_tag, multiple: nack.multiple != 0, nacked: true)
        case AMQP_BASIC_RETURN_METHOD:
            let returned = method.decoded.assumingMemoryBound(to: amqp_basic_return_t.self).pointee
            record.incoming = IncomingContent(
                origin: .return(replyCode: returned.reply_code, replyText: String(copying: returned.reply_text)),
                content: DeliveryContent(
                    exchange: String(copying: returned.exchange), routingKey: String(copying: returned.routing_key)))
        case AMQP_BASIC_CANCEL_METHOD:
            let cancel = method.decoded.assumingMemoryBound(to: amqp_basic_cancel_t.self).pointee
            consumerCancelledByBroker(record, tag: String(copying: cancel.consumer_tag), replyExpected: cancel.nowait == 0)
        case AMQP_CHANNEL_CLOSE_METHOD:
            channelClosedByBroker(record, method.decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee)
        case AMQP_CHANNEL_FLOW_METHOD:
            let flow = method.decoded.assumingMemoryBound(to: amqp_channel_flow_t.self).pointee
            sendWithoutReply(AMQP_CHANNEL_FLOW_OK_METHOD, amqp_channel_flow_ok_t(active: flow.active), on: number)
        default:
            resolvePending(record, method)
        }
    }

    /// The broker closed a channel after an error on it: acknowledge, fail what waits on it, free
    /// the number.
    func channelClosedByBroker(_ record: ChannelRecord, _ close: amqp_channel_close_t) {
        let error = AMQPError.brokerClosedChannel(
            replyCode: close.reply_code, replyText: String(copying: close.reply_text), classID: close.class_id,
            methodID: close.method_id)
        let later = error.asClosed(.channelClosed, "channel \(record.number) is closed")
        record.status.markClosed(later)
        sendWithoutReply(AMQP_CHANNEL_CLOSE_OK_METHOD, amqp_channel_close_ok_t(dummy: 0), on: record.number)
        logger.debug("channel closed by the broker", metadata: ["amqp.channel": "\(record.number)", "amqp.reason": "\(error)"])

        let consumedQueues = record.consumers.values.map(\.queue)
        defer { forgetIfAutoDeleted(consumedQueues) }
        guard case .closing = record.phase, let ourClose = record.pending.popLast() else {
            record.terminate(first: error, rest: later)
            channels[record.number] = nil
            return
        }
        // Our channel.close crossed the broker's: the channel is closed either way, but the
        // broker may still answer our close, so the number waits before it is reused.
        record.terminate(first: later, rest: later)
        record.phase = .draining(until: clock.now + configuration.closeTimeout)
        ourClose.continuation.resume(returning: .channelCloseOk)
    }

    /// A reply to the oldest synchronous method waiting on the channel.
    func resolvePending(_ record: ChannelRecord, _ method: amqp_method_t) {
        guard let waiting = record.pending.first else {
            protocolViolation("the broker sent \(method.id.methodName) on channel \(record.number), which awaits nothing")
            return
        }
        guard waiting.expected.contains(method.id) else {
            protocolViolation(
                "the broker answered \(waiting.name) on channel \(record.number) with \(method.id.methodName)")
            return
        }
        record.pending.removeFirst()
        defer { transmitNext(on: record) }
        switch waiting.recording {
        case .prefetchSet(let prefetch)?:
            if prefetch.global { record.prefetch.global = prefetch } else { record.prefetch.perConsumer = prefetch }
        case .transactionsSelected?:
            record.isTransactional = true
        case let change?:
            topology.apply(change, reply: MethodReply(copying: method))
        case nil:
            break
        }
        switch method.id {
        case AMQP_BASIC_GET_OK_METHOD:
            // The message's header and body frames follow; the get resolves when they are in.
            let ok = method.decoded.assumingMemoryBound(to: amqp_basic_get_ok_t.self).pointee
            guard let tag = record.applicationTag(ok.delivery_tag) else {
                waiting.continuation.resume(throwing: tagOutOfSequence(ok.delivery_tag, on: record))
                return
            }
            record.incoming = IncomingContent(
                origin: .get(waiting),
                content: DeliveryContent(
                    deliveryTag: tag, redelivered: ok.redelivered != 0,
                    exchange: String(copying: ok.exchange), routingKey: String(copying: ok.routing_key),
                    messageCount: ok.message_count, generation: record.generation))
            return
        case AMQP_BASIC_CANCEL_OK_METHOD:
            // Ends the sequence here, in frame order: no delivery for it can follow.
            let ok = method.decoded.assumingMemoryBound(to: amqp_basic_cancel_ok_t.self).pointee
            let consumer = record.consumers.removeValue(forKey: String(copying: ok.consumer_tag))
            for content in consumer?.flush() ?? [] { giveBack(content, on: record, outstanding: true) }
            consumer?.deliveries.finish()
            if let queue = consumer?.queue { forgetIfAutoDeleted([queue]) }
        case AMQP_CHANNEL_OPEN_OK_METHOD:
            if case .opening = record.phase { record.phase = .open }
        case AMQP_CHANNEL_CLOSE_OK_METHOD:
            channels[record.number] = nil
            let consumedQueues = record.consumers.values.map(\.queue)
            record.terminate(
                first: closedByApplication(record), rest: closedByApplication(record), consumersEndNormally: true)
            forgetIfAutoDeleted(consumedQueues)
            logger.trace("channel closed", metadata: ["amqp.channel": "\(record.number)"])
        default:
            break
        }
        waiting.continuation.resume(returning: MethodReply(copying: method))
    }

    private func closedByApplication(_ record: ChannelRecord) -> AMQPError {
        record.status.closeReason ?? AMQPError(.channelClosed, "channel \(record.number) was closed by the application")
    }

    /// The most memory a content header's announced body size reserves before the bytes arrive.
    static let largestBodyReservedUpFront = 16 << 20

    /// A content header or body frame: the next part of the message the channel is receiving.
    func handleContent(_ frame: amqp_frame_t) {
        guard let record = channel(frame.channel) else {
            protocolViolation("the broker sent content on channel \(frame.channel), which is not open")
            return
        }
        if isClosing { return }
        if case .draining = record.phase { return }
        guard let incoming = record.incoming else {
            protocolViolation("the broker sent content on channel \(frame.channel) without a method announcing it")
            return
        }
        if Int32(frame.frame_type) == AMQP_FRAME_HEADER {
            let header = frame.payload.properties
            guard !incoming.headerReceived, header.class_id == 60 else {
                protocolViolation("the broker sent an unexpected content header on channel \(frame.channel)")
                return
            }
            incoming.headerReceived = true
            do {
                incoming.content.properties = try record.recentProperties.properties(
                    encoded: header.raw,
                    decoded: header.decoded.assumingMemoryBound(to: amqp_basic_properties_t.self).pointee)
            } catch {
                incoming.unreadable = error as? AMQPError
            }
            guard let bodySize = Int(exactly: header.body_size) else {
                protocolViolation("the broker announced a \(header.body_size)-byte body on channel \(frame.channel)")
                return
            }
            incoming.bodySize = bodySize
            // Reserved as announced up to a bound: a peer's number alone must not allocate memory.
            incoming.content.body.reserveCapacity(min(bodySize, Self.largestBodyReservedUpFront))
        } else {
            let fragment = UnsafeRawBufferPointer(frame.payload.body_fragment)
            guard incoming.headerReceived, incoming.content.body.count + fragment.count <= incoming.bodySize else {
                protocolViolation("the broker sent an unexpected body frame on channel \(frame.channel)")
                return
            }
            incoming.content.body.append(contentsOf: fragment)
        }
        guard incoming.headerReceived, incoming.content.body.count == incoming.bodySize else { return }
        record.incoming = nil
        if let unreadable = incoming.unreadable {
            refuse(incoming, because: unreadable, on: record)
            return
        }
        switch incoming.origin {
        case .get(let waiting):
            unreportedCounts.delivered += 1
            if waiting.continuation.isAbandoned {
                // The caller was cancelled: give the message back rather than leave it unacknowledged.
                if !waiting.autoAck { giveBack(incoming.content, on: record) }
            } else {
                if !waiting.autoAck { record.status.deliveryOutstanding(incoming.content.deliveryTag) }
                waiting.continuation.resume(returning: .getOk(incoming.content))
            }
        case .deliver:
            // Moved out (the incoming record is done with): no retain and release of every field.
            var content = DeliveryContent()
            swap(&content, &incoming.content)
            deliver(content, on: record)
        case .return(let replyCode, let replyText):
            returned(incoming.content, replyCode: replyCode, replyText: replyText, on: record)
        }
    }

    /// A message whose properties nothing could hold unchanged: rejected without requeueing (the
    /// queue's dead-letter exchange gets it as it is) rather than handed over altered. A waiting
    /// `basic.get` throws ``AMQPError/Code/unreadableMessage``.
    private func refuse(_ incoming: IncomingContent, because reason: AMQPError, on record: ChannelRecord) {
        let autoAck: Bool
        switch incoming.origin {
        case .get(let waiting): autoAck = waiting.autoAck
        case .deliver: autoAck = record.consumers[incoming.content.consumerTag ?? ""]?.autoAck ?? true
        case .return: autoAck = true  // nothing to settle: the broker returned it to us
        }
        let disposition = autoAck ? "it was already acknowledged automatically" : "rejected without requeueing"
        let error = AMQPError(
            .unreadableMessage,
            "a message on channel \(record.number) (routing key '\(incoming.content.routingKey)') cannot be received unchanged: \(reason.message); \(disposition)")
        logger.error("unreadable message", metadata: ["amqp.reason": "\(error.message)"])
        if !autoAck, let connection {
            writes.willWrite()
            let status = amqp_basic_reject(connection, record.number, record.brokerTag(incoming.content.deliveryTag), 0)
            if status != AMQP_STATUS_OK.rawValue { tearDown(connectionLost(status: status, while: "rejecting")) }
        }
        if case .get(let waiting) = incoming.origin { waiting.continuation.resume(throwing: error) }
    }

    /// A delivery tag that breaks the broker's numbering (see ``ChannelRecord/applicationTag(_:)``)
    /// fails the connection.
    @discardableResult
    private func tagOutOfSequence(_ tag: UInt64, on record: ChannelRecord) -> AMQPError {
        let previous = record.highestTag &- record.tagOffset
        protocolViolation("the broker sent delivery tag \(tag) on channel \(record.number) after \(previous)")
        return closeReason ?? AMQPError(.protocolError, "delivery tag \(tag) out of sequence")
    }

    func protocolViolation(_ message: String) {
        logger.debug("protocol violation", metadata: ["amqp.reason": "\(message)"])
        tearDown(AMQPError(.protocolError, message))
    }
}
