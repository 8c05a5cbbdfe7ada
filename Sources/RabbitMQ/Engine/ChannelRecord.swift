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

    /// A `basic.qos` setting, recorded to be applied again after a recovery.
    struct Prefetch: Sendable, Hashable {
        var count: UInt16
        var size: UInt32
        var global: Bool
    }

    /// A consumer's end of its delivery sequence, and what it was started with (to start it
    /// again after a recovery). A class: a delivery appends to the batch through the one
    /// reference the dictionary holds, without a lookup to write it back.
    final class Consumer {
        /// Deliveries go to the sequence in batches, one per turn of the loop: one hand-over
        /// (and at most one wake-up of the consuming task) for many messages.
        let deliveries: DeliveryQueue
        let autoAck: Bool
        /// The queue; a server-named queue's new name after a recovery.
        var queue: String
        let exclusive: Bool
        let arguments: FieldTable
        /// The channel's per-consumer prefetch when it started (`nil`: none), which applies to
        /// it for good: recovery starts it again under the same one.
        let prefetch: Prefetch?
        /// The offset of the last delivery from a stream queue (its `x-stream-offset` header).
        var lastStreamOffset: Int64?
        /// `basic.cancel` sent: deliveries still in flight are handed back to the broker.
        var cancelling = false
        /// Deliveries of this turn, not yet handed over. Unchecked exclusivity: a consumer record
        /// lives on the connection's thread, and only ``append(_:)`` and ``flush()`` (which call
        /// nothing that reaches the batch while they hold it) touch it, once per delivery.
        @exclusivity(unchecked) private(set) var batch: [DeliveryContent] = []
        /// The size of the last batch handed over: the next one reserves about as much room.
        private var lastBatchCount = 1

        init(
            deliveries: DeliveryQueue, autoAck: Bool, queue: String,
            exclusive: Bool, arguments: FieldTable, prefetch: Prefetch?
        ) {
            self.deliveries = deliveries
            self.autoAck = autoAck
            self.queue = queue
            self.exclusive = exclusive
            self.arguments = arguments
            self.prefetch = prefetch
        }

        /// Adds a delivery to this turn's batch.
        func append(_ delivery: consuming DeliveryContent) {
            // Room for about as many as last time, so the batch is not regrown delivery by delivery.
            if batch.isEmpty { batch.reserveCapacity(lastBatchCount) }
            batch.append(delivery)
        }

        /// Nobody reads the sequence any more (its iterator was dropped): deliveries are given back.
        private(set) var sequenceEnded = false

        /// Hands the batch over. Returns the deliveries the sequence did not take because nobody
        /// reads it any more, to be given back (none with `autoAck`).
        @discardableResult
        func flush() -> [DeliveryContent] {
            guard !batch.isEmpty else { return [] }
            lastBatchCount = min(batch.count, 64)
            var handed: [DeliveryContent] = []
            // The array goes to the sequence; an idle consumer keeps no buffer.
            swap(&handed, &batch)
            guard let refused = deliveries.yield(handed) else { return [] }
            sequenceEnded = true
            return autoAck ? [] : refused
        }
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
    /// Consumers by tag.
    var consumers: [String: Consumer] = [:] {
        didSet { lastConsumer = nil }
    }
    /// The consumer the last delivery went to, with its tag as that delivery carried it: the
    /// next delivery for it skips hashing the tag.
    private var lastConsumer: (tag: String, consumer: Consumer)?

    /// The consumer with `tag`, if it is still registered.
    func consumer(tag: String) -> Consumer? {
        if let lastConsumer, lastConsumer.tag == tag { return lastConsumer.consumer }
        guard let consumer = consumers[tag] else { return nil }
        lastConsumer = (tag, consumer)
        return consumer
    }
    /// Whether some consumer holds deliveries not yet handed over.
    var hasUnflushedDeliveries = false
    /// Strings deliveries repeat, reused rather than allocated per message.
    var recentStrings = RecentStrings()
    /// The properties of the last content header, for the next one with the same bytes.
    var recentProperties = RecentProperties()
    /// Publisher confirms, from `confirm.select` on.
    var confirms: ConfirmTracker?
    /// The last `basic.qos` for each scope (per consumer, and `global` for the channel).
    var prefetch: (perConsumer: Prefetch?, global: Prefetch?)
    /// In transaction mode (`tx.select`), to select again after a recovery.
    var isTransactional = false
    /// A recovery cut the current transaction: its first part died with the old connection, so
    /// the next commit must not commit the rest (see ``AMQPError/Code/transactionLost``).
    var transactionLost = false
    /// Something was published or acknowledged since the last `tx.select`, `tx.commit` or
    /// `tx.rollback` was written: a transaction in progress would lose it with the connection.
    var transactionHasWork = false
    /// Opened by recovery to re-create the topology; not the application's.
    var isRecoveryChannel = false
    /// Mirrors ``ChannelStatus/generation``: which incarnation of the connection the channel's
    /// delivery tags belong to.
    var generation = 0
    /// Added to the broker's delivery tags of this generation to make the tags the application
    /// sees: the highest tag of the earlier generations, so tags keep growing across recoveries
    /// and an old tag can never name a delivery of the new channel (the Java client does the same).
    var tagOffset: UInt64 = 0
    /// The highest tag (as the application sees it) delivered on the channel so far.
    var highestTag: UInt64 = 0

    /// The most a delivery tag may advance past the previous one. RabbitMQ numbers a channel's
    /// deliveries 1, 2, 3, …; a peer whose tags leap further could make the outstanding-tag
    /// bitmap grow without bound.
    static let largestTagStep: UInt64 = 1 << 16

    /// The application's tag for a tag the broker sent on this generation's channel, or `nil`
    /// when it is out of sequence: not above the previous one, or more than
    /// ``largestTagStep`` beyond it.
    func applicationTag(_ brokerTag: UInt64) -> UInt64? {
        let previous = highestTag &- tagOffset
        guard brokerTag > previous, brokerTag - previous <= Self.largestTagStep else { return nil }
        highestTag = brokerTag &+ tagOffset
        return highestTag
    }

    /// The broker's tag for an application's tag of the current generation (0 stays 0: "all").
    func brokerTag(_ applicationTag: UInt64) -> UInt64 {
        applicationTag == 0 ? 0 : applicationTag &- tagOffset
    }

    init(number: UInt16, id: UInt64) {
        self.number = number
        self.id = id
        self.status = ChannelStatus()
    }

    /// Hands every consumer's batch over; returns what no sequence took any more (see
    /// ``Consumer/flush()``).
    @discardableResult
    func flushDeliveries() -> [DeliveryContent] {
        guard hasUnflushedDeliveries else { return [] }
        hasUnflushedDeliveries = false
        var unread: [DeliveryContent] = []
        for consumer in consumers.values { unread += consumer.flush() }
        return unread
    }

    var isUsable: Bool {
        switch phase {
        case .opening, .open: true
        case .closing, .draining: false
        }
    }

    /// Ends everything that waits on the channel: the first waiting call fails with `first` (it
    /// is the method the broker refused), every other one, unconfirmed publish and consumer with
    /// `rest`. Consumers end normally instead when the application closed the channel.
    func terminate(first: AMQPError, rest: AMQPError, consumersEndNormally: Bool = false) {
        var error = first
        if let incoming {
            self.incoming = nil
            if case .get(let waiting) = incoming.origin { waiting.continuation.resume(throwing: error) }
            error = rest
        }
        while let reply = pending.popFirst() {
            reply.continuation.resume(throwing: error)
            error = rest
        }
        for consumer in consumers.values {
            consumer.flush()  // what arrived before the end is still delivered
            consumer.deliveries.finish(throwing: consumersEndNormally ? nil : rest)
        }
        consumers.removeAll()
        status.markClosed(rest)
        confirms?.failAll(rest)
        status.returnsContinuation.finish()
    }
}

/// A message being assembled from its method, content header and body frames, which arrive
/// one after another on the channel (other channels' frames may come in between).
///
/// A class: the channel record holds it while the frames arrive and each frame fills it in
/// place, where a value would be copied out of the record and back for every frame.
final class IncomingContent {
    /// The method that announced the content.
    enum Origin {
        /// `basic.get-ok`, answering the waiting `basic.get`.
        case get(PendingReply)
        /// `basic.deliver` to a consumer.
        case deliver
        /// `basic.return` of an unroutable mandatory message.
        case `return`(replyCode: UInt16, replyText: String)
    }

    let origin: Origin
    // Unchecked exclusivity (these fields are written for every frame of every message): an
    // incoming message belongs to its channel record on the connection's thread, and only the
    // frame handlers touch it, each access a plain statement that calls nothing which could
    // reach the same field, so no two accesses can overlap.
    /// Body and properties are filled in as the header and body frames arrive.
    @exclusivity(unchecked) var content: DeliveryContent
    @exclusivity(unchecked) var headerReceived = false
    @exclusivity(unchecked) var bodySize = 0
    /// Why the properties could not be copied (headers nested too deep); the message is then
    /// rejected once complete instead of handed over.
    var unreadable: AMQPError?

    init(origin: Origin, content: DeliveryContent) {
        self.origin = origin
        self.content = content
    }
}

/// A delivered message as the engine assembles it; the public ``AMQPDelivery`` adds the channel.
struct DeliveryContent: Sendable {
    var body: [UInt8] = []
    var properties = BasicProperties()
    var deliveryTag: UInt64 = 0
    var redelivered = false
    var exchange = ""
    var routingKey = ""
    var consumerTag: String?
    var messageCount: UInt32?
    /// The channel's generation when it arrived (see ``ChannelStatus/generation``).
    var generation = 0
}
