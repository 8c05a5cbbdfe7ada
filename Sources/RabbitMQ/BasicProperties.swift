import struct Foundation.Date

/// The properties of a message (AMQP `basic` content header): content type, headers, delivery
/// mode and the rest. Every field is optional; only the ones set travel on the wire.
///
/// ```swift
/// let properties = BasicProperties(contentType: "application/json", deliveryMode: .persistent,
///                                  messageID: "order-1234", headers: ["tenant": "eu"])
/// ```
public struct BasicProperties: Sendable, Hashable {
    /// Whether the broker writes a message to disk (on a durable queue).
    public enum DeliveryMode: UInt8, Sendable, Hashable {
        /// Kept in memory only (1).
        case transient = 1
        /// Written to disk by durable queues, surviving a broker restart (2).
        case persistent = 2
    }

    /// MIME type of the body, e.g. `application/json`.
    public var contentType: String?
    /// Encoding of the body, e.g. `gzip`.
    public var contentEncoding: String?
    /// Application headers.
    public var headers: FieldTable?
    /// Transient or persistent.
    public var deliveryMode: DeliveryMode?
    /// Priority, 0 to 255 (queues honour it up to their `x-max-priority`).
    public var priority: UInt8?
    /// Correlates a reply with its request.
    public var correlationID: String?
    /// Where replies should go (a queue name).
    public var replyTo: String?
    /// Per-message TTL in milliseconds, as a decimal string (e.g. `"60000"`).
    public var expiration: String?
    /// Application message id, e.g. for de-duplication.
    public var messageID: String?
    /// When the message was created (whole seconds on the wire).
    public var timestamp: Date?
    /// Application message type name.
    public var type: String?
    /// The user that published; RabbitMQ rejects a value other than the connection's user.
    public var userID: String?
    /// The publishing application.
    public var appID: String?
    /// Deprecated in AMQP 0-9-1; kept so nothing the broker sends is dropped.
    public var clusterID: String?

    /// Creates properties; leave out what you do not need.
    public init(
        contentType: String? = nil, contentEncoding: String? = nil, headers: FieldTable? = nil,
        deliveryMode: DeliveryMode? = nil, priority: UInt8? = nil, correlationID: String? = nil,
        replyTo: String? = nil, expiration: String? = nil, messageID: String? = nil, timestamp: Date? = nil,
        type: String? = nil, userID: String? = nil, appID: String? = nil, clusterID: String? = nil
    ) {
        self.contentType = contentType
        self.contentEncoding = contentEncoding
        self.headers = headers
        self.deliveryMode = deliveryMode
        self.priority = priority
        self.correlationID = correlationID
        self.replyTo = replyTo
        self.expiration = expiration
        self.messageID = messageID
        self.timestamp = timestamp
        self.type = type
        self.userID = userID
        self.appID = appID
        self.clusterID = clusterID
    }
}
