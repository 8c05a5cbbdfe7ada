import Testing

@testable import RabbitMQ

/// A consumer's books without a broker: deliveries go to the sequence in batches, and once
/// nobody reads the sequence the ones it did not take come back to be given back.
@Suite("Consumer books")
struct ConsumerBooksTests {
    private func consumer(autoAck: Bool = false) -> (ChannelRecord.Consumer, AsyncThrowingStream<[DeliveryContent], any Error>) {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: [DeliveryContent].self)
        let consumer = ChannelRecord.Consumer(
            continuation: continuation, autoAck: autoAck, queue: "q", exclusive: false, arguments: [:], prefetch: nil)
        return (consumer, stream)
    }

    private func delivery(_ tag: UInt64) -> DeliveryContent {
        DeliveryContent(deliveryTag: tag)
    }

    @Test func aTurnsDeliveriesAreHandedOverAsOneBatch() async throws {
        let (consumer, stream) = consumer()
        for tag in UInt64(1)...3 { consumer.append(delivery(tag)) }
        #expect(consumer.flush().isEmpty)
        #expect(consumer.flush().isEmpty, "nothing new: nothing handed over")
        consumer.append(delivery(4))
        #expect(consumer.flush().isEmpty)
        consumer.continuation.finish()
        var batches: [[UInt64]] = []
        for try await batch in stream { batches.append(batch.map(\.deliveryTag)) }
        #expect(batches == [[1, 2, 3], [4]])
        #expect(!consumer.sequenceEnded)
    }

    @Test(arguments: [false, true])
    func deliveriesForASequenceNobodyReadsComeBackToBeGivenBack(autoAck: Bool) {
        let (consumer, _) = consumer(autoAck: autoAck)
        consumer.continuation.finish()  // as when the iterator is dropped: the sequence is terminated
        consumer.append(delivery(7))
        consumer.append(delivery(8))
        let unread = consumer.flush()
        #expect(consumer.sequenceEnded)
        // With automatic acknowledgement there is nothing to give back: the broker forgot them.
        #expect(unread.map(\.deliveryTag) == (autoAck ? [] : [7, 8]))
    }
}
