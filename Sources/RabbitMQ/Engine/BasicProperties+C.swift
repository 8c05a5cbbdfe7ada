internal import CRabbitMQ

extension BasicProperties {
    /// The properties as librabbitmq's struct; strings and headers live in `arena`.
    func cProperties(_ arena: CArena) throws -> amqp_basic_properties_t {
        let fields = fields
        var c = amqp_basic_properties_t()
        var flags: UInt32 = 0
        func text(_ value: ExactText?, _ flag: Int32, _ field: WritableKeyPath<amqp_basic_properties_t, amqp_bytes_t>) {
            guard let value else { return }
            c[keyPath: field] = arena.bytes(value)
            flags |= UInt32(flag)
        }
        text(fields.exactContentType, AMQP_BASIC_CONTENT_TYPE_FLAG, \.content_type)
        text(fields.exactContentEncoding, AMQP_BASIC_CONTENT_ENCODING_FLAG, \.content_encoding)
        text(fields.exactCorrelationID, AMQP_BASIC_CORRELATION_ID_FLAG, \.correlation_id)
        text(fields.exactReplyTo, AMQP_BASIC_REPLY_TO_FLAG, \.reply_to)
        text(fields.exactExpiration, AMQP_BASIC_EXPIRATION_FLAG, \.expiration)
        text(fields.exactMessageID, AMQP_BASIC_MESSAGE_ID_FLAG, \.message_id)
        text(fields.exactType, AMQP_BASIC_TYPE_FLAG, \.type)
        text(fields.exactUserID, AMQP_BASIC_USER_ID_FLAG, \.user_id)
        text(fields.exactAppID, AMQP_BASIC_APP_ID_FLAG, \.app_id)
        text(fields.exactClusterID, AMQP_BASIC_CLUSTER_ID_FLAG, \.cluster_id)
        if let headers = fields.headers {
            c.headers = try arena.table(headers)
            flags |= UInt32(AMQP_BASIC_HEADERS_FLAG)
        }
        if let deliveryModeValue = fields.deliveryModeValue {
            c.delivery_mode = deliveryModeValue
            flags |= UInt32(AMQP_BASIC_DELIVERY_MODE_FLAG)
        }
        if let priority = fields.priority {
            c.priority = priority
            flags |= UInt32(AMQP_BASIC_PRIORITY_FLAG)
        }
        if let timestamp = fields.timestamp {
            c.timestamp = timestamp.rawValue
            flags |= UInt32(AMQP_BASIC_TIMESTAMP_FLAG)
        }
        c._flags = flags
        return c
    }

    /// Copies the properties of a content header librabbitmq decoded, exactly. Throws
    /// ``AMQPError/Code/protocolError`` for headers nested deeper than
    /// ``FieldTable/maximumDepth``, which nothing here could hold without changing them.
    init(copying c: amqp_basic_properties_t) throws {
        let flags = c._flags
        guard flags != 0 else {
            self.init()
            return
        }
        func text(_ flag: Int32, _ bytes: amqp_bytes_t) -> ExactText? {
            flags & UInt32(flag) != 0 ? ExactText(bytes: UnsafeRawBufferPointer(bytes)) : nil
        }
        func has(_ flag: Int32) -> Bool { flags & UInt32(flag) != 0 }
        self.init(
            fields: Fields(
                exactContentType: text(AMQP_BASIC_CONTENT_TYPE_FLAG, c.content_type),
                exactContentEncoding: text(AMQP_BASIC_CONTENT_ENCODING_FLAG, c.content_encoding),
                headers: has(AMQP_BASIC_HEADERS_FLAG) ? try FieldTable(copying: c.headers) : nil,
                deliveryModeValue: has(AMQP_BASIC_DELIVERY_MODE_FLAG) ? c.delivery_mode : nil,
                priority: has(AMQP_BASIC_PRIORITY_FLAG) ? c.priority : nil,
                exactCorrelationID: text(AMQP_BASIC_CORRELATION_ID_FLAG, c.correlation_id),
                exactReplyTo: text(AMQP_BASIC_REPLY_TO_FLAG, c.reply_to),
                exactExpiration: text(AMQP_BASIC_EXPIRATION_FLAG, c.expiration),
                exactMessageID: text(AMQP_BASIC_MESSAGE_ID_FLAG, c.message_id),
                timestamp: has(AMQP_BASIC_TIMESTAMP_FLAG) ? AMQPTimestamp(rawValue: c.timestamp) : nil,
                exactType: text(AMQP_BASIC_TYPE_FLAG, c.type),
                exactUserID: text(AMQP_BASIC_USER_ID_FLAG, c.user_id),
                exactAppID: text(AMQP_BASIC_APP_ID_FLAG, c.app_id),
                exactClusterID: text(AMQP_BASIC_CLUSTER_ID_FLAG, c.cluster_id)))
    }

    /// Rejects what librabbitmq would notice only after the publish's method frame is on the
    /// wire (the broker then closes the whole connection) or what RabbitMQ refuses: short
    /// strings over 255 bytes, header values RabbitMQ cannot read, nesting beyond
    /// ``FieldTable/maximumDepth``, a delivery mode other than 1 or 2, and a content header
    /// larger than one frame.
    func validate(frameMax: UInt32) throws {
        let fields = fields
        var size = 14  // class id, weight, body size, property flags
        // Field by field rather than through an array: this runs for every publish.
        func add(_ value: ExactText?, _ name: StaticString) throws {
            guard let value else { return }
            try AMQPValidation.shortString(value, "the \(name) property")
            size += 1 + value.byteCount
        }
        try add(fields.exactContentType, "contentType")
        try add(fields.exactContentEncoding, "contentEncoding")
        try add(fields.exactCorrelationID, "correlationID")
        try add(fields.exactReplyTo, "replyTo")
        try add(fields.exactExpiration, "expiration")
        try add(fields.exactMessageID, "messageID")
        try add(fields.exactType, "type")
        try add(fields.exactUserID, "userID")
        try add(fields.exactAppID, "appID")
        try add(fields.exactClusterID, "clusterID")
        if let headers = fields.headers { size += try AMQPValidation.encodedSize(of: headers, in: "headers") }
        if let deliveryModeValue = fields.deliveryModeValue, DeliveryMode(rawValue: deliveryModeValue) == nil {
            throw AMQPError(
                .invalidArgument, "the delivery mode is \(deliveryModeValue); RabbitMQ takes only 1 (transient) and 2 (persistent)")
        }
        size += (fields.deliveryModeValue == nil ? 0 : 1) + (fields.priority == nil ? 0 : 1) + (fields.timestamp == nil ? 0 : 8)
        // A frame carries 8 bytes of framing around its payload.
        guard size <= Int(frameMax) - 8 else {
            throw AMQPError(
                .invalidArgument,
                "the message properties encode to \(size) bytes, more than one \(frameMax)-byte frame can carry; move large headers into the body")
        }
    }
}
