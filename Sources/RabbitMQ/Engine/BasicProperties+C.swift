internal import CRabbitMQ
import struct Foundation.Date

extension BasicProperties {
    /// The properties as librabbitmq's struct; strings and headers live in `arena`.
    func cProperties(_ arena: CArena) throws -> amqp_basic_properties_t {
        var c = amqp_basic_properties_t()
        var flags: UInt32 = 0
        func string(_ value: String?, _ flag: Int32, _ field: WritableKeyPath<amqp_basic_properties_t, amqp_bytes_t>) {
            guard let value else { return }
            c[keyPath: field] = arena.bytes(value)
            flags |= UInt32(flag)
        }
        string(contentType, AMQP_BASIC_CONTENT_TYPE_FLAG, \.content_type)
        string(contentEncoding, AMQP_BASIC_CONTENT_ENCODING_FLAG, \.content_encoding)
        string(correlationID, AMQP_BASIC_CORRELATION_ID_FLAG, \.correlation_id)
        string(replyTo, AMQP_BASIC_REPLY_TO_FLAG, \.reply_to)
        string(expiration, AMQP_BASIC_EXPIRATION_FLAG, \.expiration)
        string(messageID, AMQP_BASIC_MESSAGE_ID_FLAG, \.message_id)
        string(type, AMQP_BASIC_TYPE_FLAG, \.type)
        string(userID, AMQP_BASIC_USER_ID_FLAG, \.user_id)
        string(appID, AMQP_BASIC_APP_ID_FLAG, \.app_id)
        string(clusterID, AMQP_BASIC_CLUSTER_ID_FLAG, \.cluster_id)
        if let headers {
            c.headers = try arena.table(headers)
            flags |= UInt32(AMQP_BASIC_HEADERS_FLAG)
        }
        if let deliveryMode {
            c.delivery_mode = deliveryMode.rawValue
            flags |= UInt32(AMQP_BASIC_DELIVERY_MODE_FLAG)
        }
        if let priority {
            c.priority = priority
            flags |= UInt32(AMQP_BASIC_PRIORITY_FLAG)
        }
        if let timestamp {
            c.timestamp = UInt64(max(timestamp.timeIntervalSince1970, 0))
            flags |= UInt32(AMQP_BASIC_TIMESTAMP_FLAG)
        }
        c._flags = flags
        return c
    }

    /// Copies the properties of a content header librabbitmq decoded.
    init(copying c: amqp_basic_properties_t) {
        self.init()
        let flags = c._flags
        func string(_ flag: Int32, _ bytes: amqp_bytes_t) -> String? {
            flags & UInt32(flag) != 0 ? String(copying: bytes) : nil
        }
        contentType = string(AMQP_BASIC_CONTENT_TYPE_FLAG, c.content_type)
        contentEncoding = string(AMQP_BASIC_CONTENT_ENCODING_FLAG, c.content_encoding)
        correlationID = string(AMQP_BASIC_CORRELATION_ID_FLAG, c.correlation_id)
        replyTo = string(AMQP_BASIC_REPLY_TO_FLAG, c.reply_to)
        expiration = string(AMQP_BASIC_EXPIRATION_FLAG, c.expiration)
        messageID = string(AMQP_BASIC_MESSAGE_ID_FLAG, c.message_id)
        type = string(AMQP_BASIC_TYPE_FLAG, c.type)
        userID = string(AMQP_BASIC_USER_ID_FLAG, c.user_id)
        appID = string(AMQP_BASIC_APP_ID_FLAG, c.app_id)
        clusterID = string(AMQP_BASIC_CLUSTER_ID_FLAG, c.cluster_id)
        if flags & UInt32(AMQP_BASIC_HEADERS_FLAG) != 0 { headers = FieldTable(copying: c.headers) }
        if flags & UInt32(AMQP_BASIC_DELIVERY_MODE_FLAG) != 0 { deliveryMode = DeliveryMode(rawValue: c.delivery_mode) }
        if flags & UInt32(AMQP_BASIC_PRIORITY_FLAG) != 0 { priority = c.priority }
        if flags & UInt32(AMQP_BASIC_TIMESTAMP_FLAG) != 0 {
            timestamp = Date(timeIntervalSince1970: Double(c.timestamp))
        }
    }

    /// Rejects what librabbitmq would notice only after the publish's method frame is on the
    /// wire (the broker then closes the whole connection): short strings over 255 bytes and a
    /// content header larger than one frame.
    func validate(frameMax: UInt32) throws {
        var size = 14  // class id, weight, body size, property flags
        // Field by field rather than through an array: this runs for every publish.
        func add(_ value: String?, _ name: StaticString) throws {
            guard let value else { return }
            try AMQPValidation.shortString(value, "the \(name) property")
            size += 1 + value.utf8.count
        }
        try add(contentType, "contentType")
        try add(contentEncoding, "contentEncoding")
        try add(correlationID, "correlationID")
        try add(replyTo, "replyTo")
        try add(expiration, "expiration")
        try add(messageID, "messageID")
        try add(type, "type")
        try add(userID, "userID")
        try add(appID, "appID")
        try add(clusterID, "clusterID")
        if let headers { size += AMQPValidation.encodedSize(of: headers) }
        size += (deliveryMode == nil ? 0 : 1) + (priority == nil ? 0 : 1) + (timestamp == nil ? 0 : 8)
        // A frame carries 8 bytes of framing around its payload.
        guard size <= Int(frameMax) - 8 else {
            throw AMQPError(
                .invalidArgument,
                "the message properties encode to \(size) bytes, more than one \(frameMax)-byte frame can carry; move large headers into the body")
        }
    }
}
