import Testing

@testable import RabbitMQ

/// The hand-over of a consumer's deliveries without a broker: the rules `AsyncThrowingStream`
/// had (buffering, the end, the reader's cancellation) and one of its own (batches not yet read
/// join into one).
@Suite("Delivery queue")
struct DeliveryQueueTests {
    private func batch(_ tags: UInt64...) -> [DeliveryContent] {
        tags.map { DeliveryContent(deliveryTag: $0) }
    }

    /// Counts how often the queue's cancellation handler ran.
    private final class CancelCount: Sendable {
        let count = Locked(0)
        func record() { count.withLock { $0 += 1 } }
        var value: Int { count.withLock { $0 } }
    }

    private func waitUntilWaiting(_ queue: DeliveryQueue) async {
        while !queue.hasWaitingReader { await Task.yield() }
    }

    @Test func aWaitingReaderGetsTheNextBatch() async throws {
        let queue = DeliveryQueue()
        let reader = Task { try await queue.next()?.map(\.deliveryTag) }
        await waitUntilWaiting(queue)
        #expect(queue.yield(batch(1, 2)) == nil)
        #expect(try await reader.value == [1, 2])
        #expect(queue.yield(batch(3)) == nil)
        #expect(try await queue.next()?.map(\.deliveryTag) == [3])
    }

    @Test func batchesNotYetReadJoinInOrder() async throws {
        let queue = DeliveryQueue()
        #expect(queue.yield(batch(1, 2)) == nil)
        #expect(queue.yield(batch(3)) == nil)
        #expect(queue.yield(batch(4, 5)) == nil)
        #expect(try await queue.next()?.map(\.deliveryTag) == [1, 2, 3, 4, 5])
        #expect(!queue.hasWaitingReader)
        queue.finish()
        #expect(try await queue.next() == nil)
    }

    @Test func theEndComesAfterWhatIsBufferedAndItsErrorIsThrownOnce() async throws {
        let queue = DeliveryQueue()
        let cancels = CancelCount()
        queue.setOnCancel { cancels.record() }
        #expect(queue.yield(batch(1)) == nil)
        queue.finish(throwing: AMQPError(.consumerCancelled, "gone"))
        queue.finish()  // ignored: it has ended
        #expect(queue.yield(batch(2))?.map(\.deliveryTag) == [2], "refused after the end, for the engine to give back")
        #expect(try await queue.next()?.map(\.deliveryTag) == [1])
        await #expect(throws: AMQPError.self) { try await queue.next() }
        #expect(try await queue.next() == nil)
        queue.cancel()
        #expect(cancels.value == 0, "an ended queue does not cancel its consumer")
    }

    @Test func aWaitingReaderGetsTheEnd() async throws {
        let queue = DeliveryQueue()
        let failing = Task { try await queue.next() }
        await waitUntilWaiting(queue)
        queue.finish(throwing: AMQPError(.channelClosed, "closed"))
        await #expect(throws: AMQPError.self) { try await failing.value }
        #expect(try await queue.next() == nil)

        let other = DeliveryQueue()
        let ending = Task { try await other.next() }
        await waitUntilWaiting(other)
        other.finish()
        #expect(try await ending.value == nil)
    }

    @Test func cancellingTheWaitingReaderCancelsTheConsumerOnceAndEndsTheSequence() async throws {
        let queue = DeliveryQueue()
        let cancels = CancelCount()
        queue.setOnCancel { cancels.record() }
        let reader = Task { try await queue.next() }
        await waitUntilWaiting(queue)
        reader.cancel()
        #expect(try await reader.value == nil)
        #expect(cancels.value == 1)
        #expect(queue.yield(batch(5))?.map(\.deliveryTag) == [5], "deliveries after the end go back")
        queue.cancel()
        #expect(cancels.value == 1)
    }

    @Test func aCancelledReaderStillDrainsWhatIsBuffered() async throws {
        let queue = DeliveryQueue()
        let cancels = CancelCount()
        queue.setOnCancel { cancels.record() }
        #expect(queue.yield(batch(1, 2)) == nil)
        let reader = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            var seen: [UInt64] = []
            while let next = try await queue.next() { seen += next.map(\.deliveryTag) }
            return seen
        }
        #expect(try await reader.value == [1, 2])
        #expect(cancels.value == 1)
    }

    @Test func droppingTheLastReaderCancelsTheConsumer() {
        let queue = DeliveryQueue()
        let cancels = CancelCount()
        queue.setOnCancel { cancels.record() }
        // The consumer value and its iterator each hold the reader.
        var holders = [DeliveryReader(queue)]
        holders.append(holders[0])
        holders.removeLast()
        #expect(cancels.value == 0, "another holder still reads")
        holders.removeAll()
        #expect(cancels.value == 1)
        #expect(queue.yield(batch(1)) != nil, "nobody reads: deliveries go back")

        let finished = DeliveryQueue()
        let finishedCancels = CancelCount()
        finished.setOnCancel { finishedCancels.record() }
        finished.finish()
        var finishedHolders = [DeliveryReader(finished)]
        finishedHolders.removeAll()
        #expect(finishedCancels.value == 0, "the sequence had ended: nothing to cancel")
    }
}
