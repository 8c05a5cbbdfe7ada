/// The deliveries of one consumer (`basic.consume`), as an asynchronous sequence.
///
/// ```swift
/// try await channel.basicQos(prefetchCount: 50)
/// let consumer = try await channel.consume(queue: "inventory")
/// for try await delivery in consumer {
///     try await handle(delivery.body)
///     try await delivery.ack()
/// }
/// ```
///
/// With manual acknowledgement the broker sends at most the channel's prefetch count of
/// unacknowledged deliveries, which bounds what waits in the sequence's buffer. (With `autoAck`
/// nothing bounds it: the broker sends as fast as it can.)
///
/// The sequence ends:
/// - normally, after ``cancel()`` or when the application closes the channel or connection;
/// - with ``AMQPError/Code/consumerCancelled`` when the broker cancels the consumer (its queue
///   was deleted, or a quorum queue's leader moved away);
/// - with the close reason when the broker closes the channel or the connection fails.
///
/// Leaving the `for` loop early (`break`, `return`, a thrown error, or its task cancelled) cancels
/// the consumer on the broker, even while the consumer value is still in scope, and gives back
/// (`basic.nack` with requeue) the deliveries the loop never saw, so other consumers get them at
/// once. Deliveries the loop did see stay the application's to acknowledge; unacknowledged ones
/// go back to the queue when the channel closes. Iterate a consumer from one task only, once.
public struct AMQPConsumer: AsyncSequence, Sendable {
    public typealias Element = AMQPDelivery

    /// The consumer tag, unique on the channel.
    public let tag: String
    /// The channel the consumer runs on.
    public let channel: AMQPChannel
    let autoAck: Bool
    /// The deliveries, in batches; when the last copy of the consumer and its iterators is gone,
    /// the consumer is cancelled on the broker.
    let deliveries: DeliveryReader
    /// Set once an iterator was dropped before the end: the consumer is cancelled, and what is
    /// left in its delivery queue belongs to the task giving it back, so a later iterator ends at
    /// once.
    let abandoned = Locked(false)

    public func makeAsyncIterator() -> AsyncIterator {
        let state = IterationState(
            deliveries: deliveries, channel: channel, tag: tag, autoAck: autoAck, abandoned: abandoned)
        if abandoned.withLock({ $0 }) { state.ended = true }
        return AsyncIterator(state: state)
    }

    /// Cancels the consumer (`basic.cancel`); the sequence ends once the broker confirms.
    public func cancel() async throws {
        try await channel.cancel(consumerTag: tag)
    }

    /// Iterates the deliveries.
    ///
    /// Dropping the iterator before the sequence ended (leaving the `for` loop with `break`,
    /// `return` or a thrown error) cancels the consumer on the broker and gives back, requeued,
    /// every delivery the iterator received but never returned; deliveries it returned stay the
    /// application's to acknowledge.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let state: IterationState

        nonisolated(nonsending) public mutating func next() async throws -> AMQPDelivery? {
            try await state.next()
        }
    }

    /// What an iterator holds, in a class so that its end is noticed: when the last copy of the
    /// iterator goes away before the sequence ended, the consumer is abandoned.
    final class IterationState {
        /// Also for giving back what is still buffered once the iterator is gone.
        let deliveries: DeliveryReader
        let channel: AMQPChannel
        /// The channel's shared status, asked for the current generation with every delivery.
        let status: ChannelStatus
        let tag: String
        let autoAck: Bool
        /// The batch being handed out, and the next position in it.
        var batch: [DeliveryContent] = []
        var position = 0
        /// The sequence ended (normally or with an error): nothing to give back.
        var ended = false
        /// The consumer's flag, set when this iterator is dropped before the end.
        let abandoned: Locked<Bool>

        init(deliveries: DeliveryReader, channel: AMQPChannel, tag: String, autoAck: Bool, abandoned: Locked<Bool>) {
            self.deliveries = deliveries
            self.channel = channel
            self.status = channel.key.status
            self.tag = tag
            self.autoAck = autoAck
            self.abandoned = abandoned
        }

        nonisolated(nonsending) func next() async throws -> AMQPDelivery? {
            if ended { return nil }  // an iterator made after another one was abandoned
            while true {
                if position == batch.count {
                    let next: [DeliveryContent]?
                    do {
                        next = try await deliveries.next()
                    } catch {
                        ended = true
                        throw error
                    }
                    guard let next else {
                        ended = true
                        return nil
                    }
                    batch = next
                    position = 0
                    continue
                }
                let index = position
                position += 1
                // Deliveries from before a recovery cannot be acknowledged any more, and the
                // broker redelivers them: skip them, whether still in the delivery queue (where
                // they may lead a batch of current ones) or already in this batch.
                // (Auto-acknowledged ones are not coming back: they are handed out.)
                if !autoAck, batch[index].generation != status.generation { continue }
                // Moved out of the batch rather than copied: no retain and release of every field.
                var content = DeliveryContent()
                swap(&content, &batch[index])
                return AMQPDelivery(content, channel: channel, autoAck: autoAck)
            }
        }

        deinit {
            guard !ended else { return }
            abandoned.withLock { $0 = true }
            // Abandoned: cancel the consumer, and give back what nobody will see. Deliveries
            // still arriving before cancel-ok are given back by the connection.
            let unseen = autoAck ? [] : Array(batch[position...])
            let (channel, tag, deliveries, autoAck) = (channel, tag, deliveries, autoAck)
            Task {
                for delivery in unseen { channel.giveBack(delivery) }
                await channel.connection.core.cancelConsumer(on: channel.key, tag: tag)
                guard !autoAck else { return }
                do {
                    while let batch = try await deliveries.next() {
                        for delivery in batch { channel.giveBack(delivery) }
                    }
                } catch {
                    // The channel or connection closed: the broker requeues what was unacknowledged.
                }
            }
        }
    }
}

@available(*, unavailable)
extension AMQPConsumer.AsyncIterator: Sendable {}
