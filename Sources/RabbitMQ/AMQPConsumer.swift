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
/// Leaving the `for` loop early (or cancelling its task) cancels the consumer on the broker, and
/// unacknowledged deliveries go back to the queue when the channel closes. Iterate a consumer
/// from one task only.
public struct AMQPConsumer: AsyncSequence, Sendable {
    public typealias Element = AMQPDelivery

    /// The consumer tag, unique on the channel.
    public let tag: String
    /// The channel the consumer runs on.
    public let channel: AMQPChannel
    let autoAck: Bool
    let stream: AsyncThrowingStream<[DeliveryContent], any Error>

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: stream.makeAsyncIterator(), channel: channel, autoAck: autoAck)
    }

    /// Cancels the consumer (`basic.cancel`); the sequence ends once the broker confirms.
    public func cancel() async throws {
        try await channel.cancel(consumerTag: tag)
    }

    /// Iterates the deliveries.
    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<[DeliveryContent], any Error>.AsyncIterator
        let channel: AMQPChannel
        let autoAck: Bool
        /// The batch being handed out, and the next position in it.
        var batch: [DeliveryContent] = []
        var position = 0

        nonisolated(nonsending) public mutating func next() async throws -> AMQPDelivery? {
            while position == batch.count {
                guard let next = try await base.next(isolation: #isolation) else { return nil }
                // Deliveries from before a recovery cannot be acknowledged any more, and the
                // broker redelivers them: skip them. (Auto-acknowledged ones are not coming back.)
                if !autoAck, let first = next.first, first.generation != channel.key.status.generation { continue }
                batch = next
                position = 0
            }
            defer { position += 1 }
            return AMQPDelivery(batch[position], channel: channel, autoAck: autoAck)
        }
    }
}

@available(*, unavailable)
extension AMQPConsumer.AsyncIterator: Sendable {}
