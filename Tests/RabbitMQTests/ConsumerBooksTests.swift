import Testing

@testable import RabbitMQ

/// A consumer's books without a broker: deliveries go to the sequence in batches, and once
/// nobody reads the sequence the ones it did not take come back to be given back.
@Suite("Consumer books")
struct ConsumerBooksTests {
    private func consumer(autoAck: Bool = false) -> (ChannelRecord.Consumer, DeliveryQueue) {
        let deliveries = DeliveryQueue()
        let consumer = ChannelRecord.Consumer(
            deliveries: deliveries, autoAck: autoAck, queue: "q", exclusive: false, arguments: [:], prefetch: nil)
        return (consumer, deliveries)
    }

    private func delivery(_ tag: UInt64) -> DeliveryContent {
        DeliveryContent(deliveryTag: tag)
    }

    @Test func aTurnsDeliveriesAreHandedOverAsOneBatch() async throws {
        let (consumer, deliveries) = consumer()
        for tag in UInt64(1)...3 { consumer.append(delivery(tag)) }
        #expect(consumer.flush().isEmpty)
        #expect(consumer.flush().isEmpty, "nothing new: nothing handed over")
        #expect(try await deliveries.next()?.map(\.deliveryTag) == [1, 2, 3])
        consumer.append(delivery(4))
        consumer.append(delivery(5))
        #expect(consumer.flush().isEmpty)
        consumer.append(delivery(6))
        #expect(consumer.flush().isEmpty)
        deliveries.finish()
        // Batches the reader has not taken yet join into one.
        #expect(try await deliveries.next()?.map(\.deliveryTag) == [4, 5, 6])
        #expect(try await deliveries.next() == nil)
        #expect(!consumer.sequenceEnded)
    }

    @Test(arguments: [false, true])
    func deliveriesForASequenceNobodyReadsComeBackToBeGivenBack(autoAck: Bool) {
        let (consumer, _) = consumer(autoAck: autoAck)
        consumer.deliveries.cancel()  // as when the iterator is dropped: the sequence is terminated
        consumer.append(delivery(7))
        consumer.append(delivery(8))
        let unread = consumer.flush()
        #expect(consumer.sequenceEnded)
        // With automatic acknowledgement there is nothing to give back: the broker forgot them.
        #expect(unread.map(\.deliveryTag) == (autoAck ? [] : [7, 8]))
    }
}
