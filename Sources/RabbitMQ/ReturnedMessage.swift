/// A `mandatory` message the broker could not route to any queue and sent back (`basic.return`).
public struct ReturnedMessage: Sendable, Hashable {
    /// Why, e.g. 312.
    public var replyCode: UInt16
    /// Why, e.g. `NO_ROUTE`.
    public var replyText: String
    /// The exchange it was published to.
    public var exchange: String
    /// The routing key it was published with.
    public var routingKey: String
    /// Its properties.
    public var properties: BasicProperties
    /// Its body.
    public var body: [UInt8]
}
