/// A channel: a lightweight, independent session inside a connection, on which exchanges and
/// queues are declared and messages published and consumed.
///
/// ```swift
/// let channel = try await connection.openChannel()
/// let queue = try await channel.queueDeclare("inventory", durable: true)
/// await channel.close()
/// ```
///
/// A channel is a handle (a number and its connection) and owns no C state; copy it freely and
/// use it from any task. Synchronous methods called on one channel from several tasks are sent
/// one at a time, in call order (AMQP allows one in flight per channel); different channels
/// never wait for each other. When the broker closes a channel after an error on it (a 404 for a
/// missing queue, a 406 for a conflicting declare), the call that caused it fails with the
/// broker's reply code and text, every other call waiting on the channel fails, and later calls
/// fail with ``AMQPError/Code/channelClosed`` carrying the same reply. Other channels of the
/// connection are not affected: open a new channel to go on.
public struct AMQPChannel: Sendable, Hashable {
    /// The connection the channel belongs to.
    public let connection: AMQPConnection
    let key: ChannelKey

    init(connection: AMQPConnection, key: ChannelKey) {
        self.connection = connection
        self.key = key
    }

    /// The channel number (1 up to the negotiated channel maximum).
    public var number: UInt16 { key.number }

    /// Whether the channel is open: neither closed by the application or the broker, nor on a
    /// closed connection.
    public var isOpen: Bool { key.status.closeReason == nil && connection.isOpen }

    /// Why the channel closed, once it has (the broker's reply for a channel error).
    public var closeReason: AMQPError? { key.status.closeReason ?? connection.closeReason }

    /// Closes the channel (`channel.close`, then the broker's `close-ok`). Idempotent and never
    /// throws: when it returns the channel is closed or its connection is.
    public func close() async {
        await connection.core.closeChannel(key)
    }

    public static func == (lhs: AMQPChannel, rhs: AMQPChannel) -> Bool {
        lhs.connection === rhs.connection && lhs.key == rhs.key
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(ObjectIdentifier(connection))
        hasher.combine(key)
    }
}
