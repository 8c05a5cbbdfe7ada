internal import CRabbitMQ

extension ConnectionCore {
    // MARK: - Publishing

    /// Publishes a message (`basic.publish`, its content header and body frames). Returns once
    /// librabbitmq has written the frames to the socket.
    func publish(
        on key: ChannelKey, exchange: String, routingKey: String, properties: BasicProperties, body: [UInt8]
    ) throws {
        try ensureOpen()
        guard let connection, let record = channels[key.number], record.id == key.id, record.isUsable else {
            throw key.status.closeReason ?? AMQPError(.channelClosed, "channel \(key.number) is closed")
        }
        try properties.validate(frameMax: frameMax)
        let arena = CArena()
        var cProperties = try properties.cProperties(arena)
        let result = body.withUnsafeBytes { bytes in
            amqp_basic_publish(
                connection, key.number, arena.bytes(exchange), arena.bytes(routingKey), 0, 0, &cProperties,
                amqp_bytes_t(len: bytes.count, bytes: UnsafeMutableRawPointer(mutating: bytes.baseAddress)))
        }
        withExtendedLifetime(arena) {}
        guard result == AMQP_STATUS_OK.rawValue else {
            // Part of the message may be on the wire: the connection cannot be trusted any more.
            let error = connectionLost(status: result, while: "publishing")
            tearDown(error)
            throw error
        }
    }
}
