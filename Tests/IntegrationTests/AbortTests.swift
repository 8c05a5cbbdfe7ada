import Foundation
import RabbitMQ
import Testing

@Suite(
    "Aborting a connection against a real broker",
    .enabled(if: TestBroker.reachableOrRequired, "needs a broker; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"), .watchdog)
struct AbortTests {
    /// Two consumers on a single-active-consumer quorum queue; the active one holds messages 0–4
    /// unacknowledged while 5–9 wait in the queue, then its connection ends. Returns the order in
    /// which the standby consumer gets all ten.
    private func handover(ending: @Sendable (AMQPConnection) async -> Void) async throws -> [Int] {
        let queue = TestBroker.uniqueName("sac-handover")
        try await TestBroker.declareQuorumQueue(queue, arguments: ["x-single-active-consumer": true])
        let setup = try await TestBroker.connect()
        let channel = try await setup.openChannel()
        try await channel.queueDeclare(
            queue, durable: true, arguments: ["x-queue-type": "quorum", "x-single-active-consumer": true])

        let active = try await TestBroker.connect()
        let activeChannel = try await active.openChannel()
        try await activeChannel.basicQos(prefetchCount: 5)
        let activeConsumer = try await activeChannel.consume(queue: queue)
        let standby = try await TestBroker.connect()
        let standbyChannel = try await standby.openChannel()
        try await standbyChannel.basicQos(prefetchCount: 20)
        let standbyConsumer = try await standbyChannel.consume(queue: queue)

        try await channel.confirmSelect()
        for index in 0..<10 { try await channel.publish("\(index)", routingKey: queue) }
        // Read with an iterator kept alive: leaving a loop would cancel the consumer first.
        var held: [Int] = []
        var iterator = activeConsumer.makeAsyncIterator()
        while held.count < 5, let delivery = try await iterator.next() { held.append(Int(delivery.bodyString)!) }
        #expect(held == [0, 1, 2, 3, 4])

        await ending(active)
        withExtendedLifetime(iterator) {}
        var received: [Int] = []
        for try await delivery in standbyConsumer {
            received.append(Int(delivery.bodyString)!)
            try await delivery.ack()
            if received.count == 10 { break }
        }
        try await channel.queueDelete(queue)
        await standby.close()
        await setup.close()
        return received
    }

    /// The promise ``AMQPConnection/abort()`` documents: what the aborted connection held goes
    /// to the next consumer first, in order.
    @Test func anAbortedConsumersMessagesGoToTheNextConsumerFirstInOrder() async throws {
        let received = try await handover { await $0.abort() }
        #expect(received == Array(0..<10))
    }

    @Test func anAbortedConnectionIsClosedForGoodWithoutRecovery() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        await connection.abort()
        #expect(!connection.isOpen)
        #expect(connection.closeReason?.code == .connectionClosed)
        await #expect(throws: AMQPError.self) { try await channel.queueDeclare(TestBroker.uniqueName("after-abort")) }
        try await Task.sleep(for: .milliseconds(200))
        #expect(!connection.isOpen, "no recovery follows an abort")
        await connection.abort()  // idempotent
        await connection.close()
    }

    /// What the partitioned dispatcher relies on when it releases a partition: a `basic.consume`
    /// answered after the acknowledgements makes the quorum queue apply them before the abort
    /// (without it, RabbitMQ 3.10 returned about a third of the last 50 acknowledged messages).
    @Test(arguments: [false, true])
    func acknowledgementsBeforeAConsumeBarrierSurviveAnAbort(singleActiveConsumer: Bool) async throws {
        for _ in 0..<5 {
            let returned = try await AcknowledgedThenEnded.returned(singleActiveConsumer: singleActiveConsumer) {
                connection, channel, _, queue in
                _ = try await channel.consume(queue: queue)
                await connection.abort()
            }
            #expect(returned == 0)
        }
    }

    /// What the dispatcher relies on when it shuts down: a cancel answered after the
    /// acknowledgements makes the quorum queue apply them first.
    @Test func acknowledgementsBeforeACancelSurviveTheEnd() async throws {
        for _ in 0..<5 {
            let returned = try await AcknowledgedThenEnded.returned { connection, _, consumer, _ in
                try await consumer.cancel()
                await connection.abort()
            }
            #expect(returned == 0)
        }
    }
}
