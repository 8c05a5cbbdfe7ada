/// Work a caller hands to the connection thread without waiting for it: the per-message
/// operations, whose checks the caller already made against the channel's shared status.
enum ConnectionCommand: Sendable {
    case publish(PublishCommand)
    case acknowledge(key: ChannelKey, generation: Int, deliveryTag: UInt64, multiple: Bool, kind: AcknowledgementKind)

    /// The connection is gone before the command ran: settle what it promised.
    func abandon() {
        guard case .publish(let publish) = self else { return }
        let reason = publish.key.status.closeReason ?? AMQPError(.connectionClosed, "the connection is closed")
        publish.confirmation?.resolve(.failure(reason))
    }
}

/// One message to publish, with the room it reserved and the confirmation to settle.
///
/// A class: the command is handed through the executor's queue into a batch and, in confirm
/// mode, kept until the broker's verdict; one reference is cheaper to pass on than a copy of
/// every field.
final class PublishCommand: Sendable {
    let key: ChannelKey
    let exchange: String
    let routingKey: String
    let mandatory: Bool
    let properties: BasicProperties
    let body: [UInt8]
    /// Present when the caller published in confirm mode.
    let confirmation: PublishConfirmation?

    init(
        key: ChannelKey, exchange: String, routingKey: String, mandatory: Bool, properties: BasicProperties,
        body: [UInt8], confirmation: PublishConfirmation?
    ) {
        self.key = key
        self.exchange = exchange
        self.routingKey = routingKey
        self.mandatory = mandatory
        self.properties = properties
        self.body = body
        self.confirmation = confirmation
    }
}
