import DequeModule

/// The connection actor's book-keeping for one open channel number. Confined to the actor.
final class ChannelRecord {
    enum Phase {
        /// `channel.open` sent, `open-ok` not yet received.
        case opening
        case open
        /// The application sent `channel.close`; waiting for `close-ok`.
        case closing
        /// Closed from both sides, but a `close-ok` may still be on its way (the broker and the
        /// application closed at the same time). Frames for it are dropped; the number is not
        /// reused until the `close-ok` arrives or `until` passes.
        case draining(until: ContinuousClock.Instant)
    }

    let number: UInt16
    /// Unique per connection: tells this channel from earlier ones with the same number.
    let id: UInt64
    let status: ChannelStatus
    var phase: Phase = .opening
    /// Tasks waiting for replies, in the order their methods were sent.
    var pending: Deque<PendingReply> = []
    /// A message whose content header and body frames are still arriving.
    var incoming: IncomingContent?

    init(number: UInt16, id: UInt64) {
        self.number = number
        self.id = id
        self.status = ChannelStatus()
    }

    var isUsable: Bool {
        switch phase {
        case .opening, .open: true
        case .closing, .draining: false
        }
    }

    /// Fails every waiting task: the first with `first` (the method the broker refused), the rest
    /// with `rest`.
    func failPending(first: AMQPError, rest: AMQPError) {
        var error = first
        if let incoming {
            self.incoming = nil
            switch incoming.origin {
            case .get(let waiting, _): waiting.continuation.resume(throwing: error)
            }
            error = rest
        }
        while let reply = pending.popFirst() {
            reply.continuation.resume(throwing: error)
            error = rest
        }
    }
}

/// A message being assembled from its method, content header and body frames, which arrive
/// one after another on the channel (other channels' frames may come in between).
struct IncomingContent {
    /// The method that announced the content, and who waits for it.
    enum Origin {
        /// `basic.get-ok`: the message (body and properties still empty) and the waiting `basic.get`.
        case get(PendingReply, AMQPMessage)
    }

    let origin: Origin
    /// Set by the content header.
    var properties: BasicProperties?
    var bodySize = 0
    var body: [UInt8] = []

    init(origin: Origin) { self.origin = origin }
}
