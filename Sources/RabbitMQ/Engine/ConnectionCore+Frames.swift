internal import CRabbitMQ

extension ConnectionCore {
    // MARK: - Frames

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
            tearDown(closeReason ?? AMQPError(.connectionClosed, "the connection was closed by the application"))
        case AMQP_CONNECTION_BLOCKED_METHOD:
            let blocked = method.decoded.assumingMemoryBound(to: amqp_connection_blocked_t.self).pointee
            let reason = String(copying: blocked.reason)
            status.update { $0.blockedReason = reason }
            logger.debug("connection blocked by the broker", metadata: ["amqp.reason": "\(reason)"])
        case AMQP_CONNECTION_UNBLOCKED_METHOD:
            status.update { $0.blockedReason = nil }
            logger.debug("connection unblocked by the broker")
        default:
            protocolViolation("the broker sent \(method.id.methodName) on channel 0")
        }
    }

    func handleChannelMethod(_ method: amqp_method_t, channel number: UInt16) {
        guard let record = channels[number] else {
            protocolViolation("the broker sent \(method.id.methodName) on channel \(number), which is not open")
            return
        }
        if case .closing = phase { return }  // the broker answers nothing but close-ok now
        if case .draining = record.phase {
            if method.id == AMQP_CHANNEL_CLOSE_OK_METHOD { channels[number] = nil }
            return
        }
        switch method.id {
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

        guard case .closing = record.phase, let ourClose = record.pending.popLast() else {
            record.failPending(first: error, rest: later)
            channels[record.number] = nil
            return
        }
        // Our channel.close crossed the broker's: the channel is closed either way, but the
        // broker may still answer our close, so the number waits before it is reused.
        record.failPending(first: later, rest: later)
        record.phase = .draining(until: clock.now + configuration.closeTimeout)
        ourClose.continuation.resume(returning: .channelCloseOk)
    }

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
        switch method.id {
        case AMQP_BASIC_GET_OK_METHOD:
            // The message's header and body frames follow; the get resolves when they are in.
            let ok = method.decoded.assumingMemoryBound(to: amqp_basic_get_ok_t.self).pointee
            let message = AMQPMessage(
                body: [], properties: BasicProperties(), deliveryTag: ok.delivery_tag, redelivered: ok.redelivered != 0,
                exchange: String(copying: ok.exchange), routingKey: String(copying: ok.routing_key),
                messageCount: ok.message_count)
            record.incoming = IncomingContent(origin: .get(waiting, message))
            return
        case AMQP_CHANNEL_OPEN_OK_METHOD:
            if case .opening = record.phase { record.phase = .open }
        case AMQP_CHANNEL_CLOSE_OK_METHOD:
            channels[record.number] = nil
            logger.trace("channel closed", metadata: ["amqp.channel": "\(record.number)"])
        default:
            break
        }
        waiting.continuation.resume(returning: MethodReply(copying: method))
    }

    /// A content header or body frame: the next part of the message the channel is receiving.
    func handleContent(_ frame: amqp_frame_t) {
        guard let record = channels[frame.channel] else {
            protocolViolation("the broker sent content on channel \(frame.channel), which is not open")
            return
        }
        if case .closing = phase { return }
        if case .draining = record.phase { return }
        guard let incoming = record.incoming else {
            protocolViolation("the broker sent content on channel \(frame.channel) without a method announcing it")
            return
        }
        if Int32(frame.frame_type) == AMQP_FRAME_HEADER {
            let header = frame.payload.properties
            guard incoming.properties == nil, header.class_id == 60 else {
                protocolViolation("the broker sent an unexpected content header on channel \(frame.channel)")
                return
            }
            record.incoming?.properties = BasicProperties(
                copying: header.decoded.assumingMemoryBound(to: amqp_basic_properties_t.self).pointee)
            record.incoming?.bodySize = Int(header.body_size)
            record.incoming?.body.reserveCapacity(Int(header.body_size))
        } else {
            let fragment = UnsafeRawBufferPointer(frame.payload.body_fragment)
            guard incoming.properties != nil, incoming.body.count + fragment.count <= incoming.bodySize else {
                protocolViolation("the broker sent an unexpected body frame on channel \(frame.channel)")
                return
            }
            record.incoming?.body.append(contentsOf: fragment)
        }
        if let complete = record.incoming, let properties = complete.properties, complete.body.count == complete.bodySize {
            record.incoming = nil
            switch complete.origin {
            case .get(let waiting, var message):
                message.body = complete.body
                message.properties = properties
                waiting.continuation.resume(returning: .getOk(message))
            }
        }
    }
}
