/// The properties of a message (AMQP `basic` content header): content type, headers, delivery
/// mode and the rest. Every field is optional; only the ones set travel on the wire.
///
/// ```swift
/// let properties = BasicProperties(contentType: "application/json", headers: ["tenant": "eu"],
///                                  deliveryMode: .persistent, messageID: "order-1234", timestamp: .now)
/// ```
///
/// Received properties hold exactly what arrived: republished as they are, they go out byte for
/// byte as they came. A text property whose bytes are not valid UTF-8 reads with U+FFFD in place
/// of the invalid sequences and keeps its bytes (``bytes(of:)``) until you set it.
///
/// A value is one reference to shared storage, copied on the first change (like `Array`): a
/// delivery's properties travel from the socket to the application without copying their fields.
public struct BasicProperties: Sendable, Hashable {
    /// Whether the broker writes a message to disk (on a durable queue).
    public enum DeliveryMode: UInt8, Sendable, Hashable {
        /// Kept in memory only (1).
        case transient = 1
        /// Written to disk by durable queues, surviving a broker restart (2).
        case persistent = 2
    }

    /// The text properties (AMQP short strings), to read or set their exact bytes.
    public enum TextProperty: Sendable, Hashable, CaseIterable {
        /// ``BasicProperties/contentType``.
        case contentType
        /// ``BasicProperties/contentEncoding``.
        case contentEncoding
        /// ``BasicProperties/correlationID``.
        case correlationID
        /// ``BasicProperties/replyTo``.
        case replyTo
        /// ``BasicProperties/expiration``.
        case expiration
        /// ``BasicProperties/messageID``.
        case messageID
        /// ``BasicProperties/type``.
        case type
        /// ``BasicProperties/userID``.
        case userID
        /// ``BasicProperties/appID``.
        case appID
        /// ``BasicProperties/clusterID``.
        case clusterID
    }

    /// MIME type of the body, e.g. `application/json`.
    public var contentType: String? {
        get { storage.fields.exactContentType?.string }
        set { update { $0.exactContentType = newValue.map(ExactText.init) } }
    }
    /// Encoding of the body, e.g. `gzip`.
    public var contentEncoding: String? {
        get { storage.fields.exactContentEncoding?.string }
        set { update { $0.exactContentEncoding = newValue.map(ExactText.init) } }
    }
    /// Application headers.
    public var headers: FieldTable? {
        get { storage.fields.headers }
        set { update { $0.headers = newValue } }
    }
    /// Transient or persistent. The wire carries any octet; a value other than 1 or 2 (from a
    /// peer other than RabbitMQ, which refuses them) arrives as `nil` here and is kept in
    /// ``deliveryModeValue``; publishing it fails with ``AMQPError/Code/invalidArgument``.
    public var deliveryMode: DeliveryMode? {
        get { deliveryModeValue.flatMap(DeliveryMode.init(rawValue:)) }
        set { deliveryModeValue = newValue?.rawValue }
    }
    /// The delivery-mode octet exactly as it travels.
    public var deliveryModeValue: UInt8? {
        get { storage.fields.deliveryModeValue }
        set { update { $0.deliveryModeValue = newValue } }
    }
    /// Priority, 0 to 255 (queues honour it up to their `x-max-priority`).
    public var priority: UInt8? {
        get { storage.fields.priority }
        set { update { $0.priority = newValue } }
    }
    /// Correlates a reply with its request.
    public var correlationID: String? {
        get { storage.fields.exactCorrelationID?.string }
        set { update { $0.exactCorrelationID = newValue.map(ExactText.init) } }
    }
    /// Where replies should go (a queue name).
    public var replyTo: String? {
        get { storage.fields.exactReplyTo?.string }
        set { update { $0.exactReplyTo = newValue.map(ExactText.init) } }
    }
    /// Per-message TTL in milliseconds, as a decimal string (e.g. `"60000"`).
    public var expiration: String? {
        get { storage.fields.exactExpiration?.string }
        set { update { $0.exactExpiration = newValue.map(ExactText.init) } }
    }
    /// Application message id, e.g. for de-duplication.
    public var messageID: String? {
        get { storage.fields.exactMessageID?.string }
        set { update { $0.exactMessageID = newValue.map(ExactText.init) } }
    }
    /// When the message was created, in whole seconds (``AMQPTimestamp``; its `date` is the
    /// Foundation view).
    public var timestamp: AMQPTimestamp? {
        get { storage.fields.timestamp }
        set { update { $0.timestamp = newValue } }
    }
    /// Application message type name.
    public var type: String? {
        get { storage.fields.exactType?.string }
        set { update { $0.exactType = newValue.map(ExactText.init) } }
    }
    /// The user that published; RabbitMQ rejects a value other than the connection's user.
    public var userID: String? {
        get { storage.fields.exactUserID?.string }
        set { update { $0.exactUserID = newValue.map(ExactText.init) } }
    }
    /// The publishing application.
    public var appID: String? {
        get { storage.fields.exactAppID?.string }
        set { update { $0.exactAppID = newValue.map(ExactText.init) } }
    }
    /// Deprecated in AMQP 0-9-1; kept so nothing the broker sends is dropped.
    public var clusterID: String? {
        get { storage.fields.exactClusterID?.string }
        set { update { $0.exactClusterID = newValue.map(ExactText.init) } }
    }

    /// Every field, as stored. The text properties are kept as they travel: a received value
    /// that is not valid UTF-8 keeps its bytes.
    struct Fields: Hashable {
        var exactContentType: ExactText?
        var exactContentEncoding: ExactText?
        var headers: FieldTable?
        var deliveryModeValue: UInt8?
        var priority: UInt8?
        var exactCorrelationID: ExactText?
        var exactReplyTo: ExactText?
        var exactExpiration: ExactText?
        var exactMessageID: ExactText?
        var timestamp: AMQPTimestamp?
        var exactType: ExactText?
        var exactUserID: ExactText?
        var exactAppID: ExactText?
        var exactClusterID: ExactText?
    }

    /// The fields, shared by copies of a value until one of them changes.
    ///
    /// `@unchecked Sendable`, proved by copy-on-write: `update(_:)` mutates a storage only when
    /// exactly one value references it (and copies it first otherwise), so a shared storage is
    /// never written, and an unshared one is reached only through its one value, which Swift's
    /// exclusivity rules give to one task at a time.
    final class Storage: @unchecked Sendable {
        var fields: Fields

        init(_ fields: Fields) {
            self.fields = fields
        }
    }

    private var storage: Storage

    /// The fields, to read them all at once.
    var fields: Fields { storage.fields }

    /// No property set: one storage for every such value, so empty properties allocate nothing.
    private static let emptyStorage = Storage(Fields())

    init(fields: Fields) {
        storage = Storage(fields)
    }

    private init(storage: Storage) {
        self.storage = storage
    }

    /// Changes the fields, copying them first if another value shares them.
    private mutating func update(_ change: (inout Fields) -> Void) {
        if !isKnownUniquelyReferenced(&storage) { storage = Storage(storage.fields) }
        change(&storage.fields)
    }

    public static func == (lhs: BasicProperties, rhs: BasicProperties) -> Bool {
        lhs.storage === rhs.storage || lhs.storage.fields == rhs.storage.fields
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(storage.fields)
    }

    /// Creates properties; leave out what you do not need.
    public init(
        contentType: String? = nil, contentEncoding: String? = nil, headers: FieldTable? = nil,
        deliveryMode: DeliveryMode? = nil, priority: UInt8? = nil, correlationID: String? = nil,
        replyTo: String? = nil, expiration: String? = nil, messageID: String? = nil,
        timestamp: AMQPTimestamp? = nil, type: String? = nil, userID: String? = nil, appID: String? = nil,
        clusterID: String? = nil
    ) {
        // Checked argument by argument rather than by comparing `Fields`: this runs for every
        // empty value, e.g. each delivery's placeholder on its way through the engine.
        guard
            contentType != nil || contentEncoding != nil || headers != nil || deliveryMode != nil || priority != nil
                || correlationID != nil || replyTo != nil || expiration != nil || messageID != nil || timestamp != nil
                || type != nil || userID != nil || appID != nil || clusterID != nil
        else {
            self.init(storage: Self.emptyStorage)
            return
        }
        self.init(
            fields: Fields(
                exactContentType: contentType.map(ExactText.init),
                exactContentEncoding: contentEncoding.map(ExactText.init), headers: headers,
                deliveryModeValue: deliveryMode?.rawValue, priority: priority,
                exactCorrelationID: correlationID.map(ExactText.init), exactReplyTo: replyTo.map(ExactText.init),
                exactExpiration: expiration.map(ExactText.init), exactMessageID: messageID.map(ExactText.init),
                timestamp: timestamp, exactType: type.map(ExactText.init), exactUserID: userID.map(ExactText.init),
                exactAppID: appID.map(ExactText.init), exactClusterID: clusterID.map(ExactText.init)))
    }

    /// The exact bytes of a text property, or `nil` when it is not set.
    public func bytes(of property: TextProperty) -> [UInt8]? {
        storage.fields[keyPath: Self.field(of: property)]?.bytes
    }

    /// Sets a text property to exactly `bytes` (valid UTF-8 or not; at most 255), or removes it.
    public mutating func setBytes(_ bytes: [UInt8]?, of property: TextProperty) {
        update { $0[keyPath: Self.field(of: property)] = bytes.map { ExactText(bytes: $0) } }
    }

    private static func field(of property: TextProperty) -> WritableKeyPath<Fields, ExactText?> {
        switch property {
        case .contentType: \.exactContentType
        case .contentEncoding: \.exactContentEncoding
        case .correlationID: \.exactCorrelationID
        case .replyTo: \.exactReplyTo
        case .expiration: \.exactExpiration
        case .messageID: \.exactMessageID
        case .type: \.exactType
        case .userID: \.exactUserID
        case .appID: \.exactAppID
        case .clusterID: \.exactClusterID
        }
    }
}
