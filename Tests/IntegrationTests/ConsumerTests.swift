import Foundation
import RabbitMQ
import Testing

@Suite(
    "Consumers and acknowledgements against a real broker",
    .enabled(if: TestBroker.reachableOrRequired, "needs a broker; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"), .watchdog)
struct ConsumerTests {
    static let everyFieldType: FieldTable = [
        "bool": .bool(true), "int8": .int8(-8), "uint8": .uint8(200), "int16": .int16(-1600),
        "uint16": .uint16(60_000), "int32": .int32(-320_000), "uint32": .uint32(4_000_000_000),
        "int64": .int64(-64_000_000_000), "float": .float(1.5), "double": .double(-2.25),
        "decimal": .decimal(scale: 2, value: 12345), "string": "héllo", "empty": "",
        "bytes": .bytes([0, 1, 2, 255]), "timestamp": .timestamp(AMQPTimestamp(secondsSince1970: 1_790_000_000)),
        "table": ["nested": ["deeper": .int32(1)], "list": [.int32(1), "two", .void]],
        "array": [.int32(1), .array([.bool(false)]), .table(["k": "v"])], "void": .void,
    ]

    static let fullProperties = BasicProperties(
        contentType: "application/json", contentEncoding: "identity", headers: everyFieldType,
        deliveryMode: .persistent, priority: 7, correlationID: "corr-1", replyTo: "replies",
        expiration: "600000", messageID: "msg-1", timestamp: AMQPTimestamp(secondsSince1970: 1_790_000_001),
        type: "order.created", userID: "guest", appID: "tests", clusterID: "cluster-1")

    private func setUp(prefetch: UInt16? = nil) async throws -> (AMQPConnection, AMQPChannel, String) {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        if let prefetch { try await channel.basicQos(prefetchCount: prefetch) }
        let queue = try await channel.queueDeclare("", exclusive: true).name
        return (connection, channel, queue)
    }

    @Test func everyPropertyAndFieldTypeRoundTripsThroughConsumeAndGet() async throws {
        let (connection, channel, queue) = try await setUp()
        try await channel.publish("one", routingKey: queue, properties: Self.fullProperties)
        try await channel.publish("two", routingKey: queue, properties: Self.fullProperties)

        let expected = BrokerVersion.propertiesAsDelivered(Self.fullProperties, by: connection)
        let got = try #require(try await channel.basicGet(queue: queue))
        #expect(got.properties == expected)
        #expect(got.bodyString == "one")
        try await got.ack()

        let consumer = try await channel.consume(queue: queue)
        var iterator = consumer.makeAsyncIterator()
        let delivery = try #require(try await iterator.next())
        #expect(delivery.properties == expected)
        #expect(delivery.properties.headers?["table"]?.tableValue?["nested"] == ["deeper": .int32(1)])
        #expect(delivery.bodyString == "two")
        #expect(delivery.consumerTag == consumer.tag)
        try await delivery.ack()
        await connection.close()
    }

    /// RabbitMQ 3 passes an `L` through; RabbitMQ 4 delivers the same bits as an `l`.
    @Test func unsigned64BitHeadersArriveAsEachBrokerVersionKeepsThem() async throws {
        let (connection, channel, queue) = try await setUp()
        let headers: FieldTable = ["n": .uint64(.max), "small": .uint64(1 << 40)]
        try await channel.publish("u", routingKey: queue, properties: .init(headers: headers))
        let message = try #require(try await channel.basicGet(queue: queue, autoAck: true))
        let expected: FieldTable = BrokerVersion.isRabbitMQ4(connection) ? ["n": .int64(-1), "small": .int64(1 << 40)] : headers
        #expect(message.properties.headers == expected)
        await connection.close()
    }

    /// 20 MiB is over RabbitMQ 4's default `max_message_size` (16 MiB): there the broker refuses
    /// it with 406 and closes the channel; RabbitMQ 3.10 takes it.
    @Test(arguments: [0, 1 << 20, 20 << 20])
    func bodiesRoundTripThroughConsumeAndGet(size: Int) async throws {
        let (connection, channel, queue) = try await setUp()
        let body = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ $0 >> 8) }
        if size > BrokerVersion.largestMessage(connection) {
            let error = await #expect(throws: AMQPError.self) {
                try await channel.publish(body, routingKey: queue)
                _ = try await channel.basicGet(queue: queue, autoAck: true)
            }
            #expect(error?.code == .preconditionFailed, "\(String(describing: error))")
            #expect(error?.replyText?.contains("max size") == true, "\(String(describing: error))")
            await connection.close()
            return
        }
        try await channel.publish(body, routingKey: queue)
        try await channel.publish(body, routingKey: queue)
        let got = try #require(try await channel.basicGet(queue: queue, autoAck: true))
        #expect(got.body.count == size)
        #expect(got.body == body)
        for try await delivery in try await channel.consume(queue: queue, autoAck: true) {
            #expect(delivery.body.count == size)
            #expect(delivery.body == body)
            break
        }
        await connection.close()
    }

    /// A consumer with manual acknowledgement on a channel that never set a prefetch gets the
    /// connection's default (250): the broker does not push the whole queue into its sequence.
    /// `defaultPrefetch = nil` leaves it unlimited.
    @Test(arguments: [UInt16(250), nil])
    func aConsumerWithoutAPrefetchIsBoundedByTheDefault(defaultPrefetch: UInt16?) async throws {
        var configuration = try TestBroker.configuration()
        configuration.defaultPrefetch = defaultPrefetch
        let connection = try await AMQPConnection.open(configuration)
        let channel = try await connection.openChannel()
        let queue = try await channel.queueDeclare("", exclusive: true).name
        for index in 0..<600 { try await channel.publish("m\(index)", routingKey: queue) }
        #expect(try await TestBroker.waitForMessageCount(600, in: queue, on: channel))

        let consumer = try await channel.consume(queue: queue)
        var iterator = consumer.makeAsyncIterator()
        _ = try #require(try await iterator.next())
        // Left in the queue: what the broker holds back for want of acknowledgements.
        let expected = UInt32(600 - Int(defaultPrefetch ?? 600))
        #expect(try await TestBroker.waitForMessageCount(expected, in: queue, on: connection.openChannel()))
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await connection.openChannel().queueDeclare(queue, passive: true).messageCount == expected)
        await connection.close()
    }

    @Test func prefetchBoundsUnacknowledgedDeliveries() async throws {
        let (connection, channel, queue) = try await setUp(prefetch: 10)
        for index in 0..<50 { try await channel.publish("m\(index)", routingKey: queue) }
        #expect(try await TestBroker.waitForMessageCount(50, in: queue, on: channel))

        let consumer = try await channel.consume(queue: queue)
        var iterator = consumer.makeAsyncIterator()
        var received: [AMQPDelivery] = []
        for _ in 0..<10 { received.append(try #require(try await iterator.next())) }
        // The broker holds back the rest until something is acknowledged.
        try await Task.sleep(for: .milliseconds(500))
        let counts = try await connection.openChannel().queueDeclare(queue, passive: true)
        #expect(counts.messageCount == 40)
        let unacked = try await TestBroker.ctl(["list_queues", "--quiet", "--no-table-headers", "name", "messages_unacknowledged"])
        #expect(unacked.split(separator: "\n").contains { $0 == "\(queue)\t10" }, "\(unacked)")

        try await received[0].ack()
        received.removeFirst()
        received.append(try #require(try await iterator.next()))
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await connection.openChannel().queueDeclare(queue, passive: true).messageCount == 39)
        // Acknowledge the rest with one multiple ack; then the queue drains as the consumer acks.
        try await channel.acknowledgeMultiple(upTo: received.last!.deliveryTag)
        var total = 11
        while total < 50, let delivery = try await iterator.next() {
            try await delivery.ack()
            total += 1
        }
        #expect(total == 50)
        await connection.close()
    }

    @Test func nackRequeueRedeliversAndRejectDeadLetters() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let deadLetterExchange = TestBroker.uniqueName("dlx")
        try await channel.exchangeDeclare(deadLetterExchange, type: .fanout, autoDelete: true)
        let deadLetters = try await channel.queueDeclare("", exclusive: true).name
        try await channel.queueBind(deadLetters, exchange: deadLetterExchange)
        let queue = try await channel.queueDeclare(
            "", exclusive: true, arguments: ["x-dead-letter-exchange": .string(deadLetterExchange)]).name
        try await channel.publish("poison", routingKey: queue)

        let consumer = try await channel.consume(queue: queue)
        var iterator = consumer.makeAsyncIterator()
        let first = try #require(try await iterator.next())
        #expect(!first.redelivered)
        try await first.nack(requeue: true)
        let second = try #require(try await iterator.next())
        #expect(second.redelivered)
        #expect(second.bodyString == "poison")
        try await second.reject(requeue: false)

        #expect(try await TestBroker.waitForMessageCount(1, in: deadLetters, on: channel))
        let dead = try #require(try await channel.basicGet(queue: deadLetters, autoAck: true))
        #expect(dead.bodyString == "poison")
        let death = try #require(dead.properties.headers?["x-death"]?.arrayValue?.first?.tableValue)
        #expect(death["reason"]?.stringValue == "rejected")
        #expect(death["queue"]?.stringValue == queue)
        #expect(death["count"]?.int64Value == 1)
        await connection.close()
    }

    @Test func doubleAckAndAckAfterCloseAreErrorsThatKeepTheChannel() async throws {
        let (connection, channel, queue) = try await setUp()
        for index in 0..<3 { try await channel.publish("m\(index)", routingKey: queue) }
        let consumer = try await channel.consume(queue: queue)
        var iterator = consumer.makeAsyncIterator()
        let first = try #require(try await iterator.next())
        try await first.ack()
        let twice = await #expect(throws: AMQPError.self) { try await first.ack() }
        #expect(twice?.code == .alreadyAcknowledged)
        let nackAfterAck = await #expect(throws: AMQPError.self) { try await first.nack() }
        #expect(nackAfterAck?.code == .alreadyAcknowledged)
        #expect(channel.isOpen)

        // The channel still works: the next delivery acks fine.
        let second = try #require(try await iterator.next())
        try await second.ack()
        #expect(channel.isOpen)

        let third = try #require(try await iterator.next())
        await channel.close()
        let afterClose = await #expect(throws: AMQPError.self) { try await third.ack() }
        #expect(afterClose?.code == .channelClosed)
        // A fresh channel (maybe on the same number) is not confused by the stale tag.
        let fresh = try await connection.openChannel()
        let replaced = await #expect(throws: AMQPError.self) { try await third.ack() }
        #expect(replaced?.code == .channelClosed)
        #expect(try await TestBroker.waitForMessageCount(1, in: queue, on: fresh))
        #expect(fresh.isOpen)

        let autoAcked = try #require(try await fresh.basicGet(queue: queue, autoAck: true))
        let ackOfAutoAck = await #expect(throws: AMQPError.self) { try await autoAcked.ack() }
        #expect(ackOfAutoAck?.code == .alreadyAcknowledged)
        #expect(fresh.isOpen)
        await connection.close()
    }

    @Test func deletedQueueEndsTheSequenceWithTheBrokersCancel() async throws {
        let (connection, channel, queue) = try await setUp()
        let consumer = try await channel.consume(queue: queue)
        let ending = Task {
            var count = 0
            for try await delivery in consumer {
                try await delivery.ack()
                count += 1
            }
            return count
        }
        try await channel.publish("before-delete", routingKey: queue)
        try await Task.sleep(for: .milliseconds(200))
        try await connection.openChannel().queueDelete(queue)
        let error = await #expect(throws: AMQPError.self) { try await ending.value }
        #expect(error?.code == .consumerCancelled)
        #expect(channel.isOpen)
        await connection.close()
    }

    @Test func cancellingEndsTheSequenceAndLeavingTheLoopCancelsTheConsumer() async throws {
        let (connection, channel, queue) = try await setUp()
        let consumer = try await channel.consume(queue: queue, consumerTag: "explicit-tag")
        #expect(consumer.tag == "explicit-tag")
        #expect(try await channel.queueDeclare(queue, passive: true).consumerCount == 1)
        let duplicate = await #expect(throws: AMQPError.self) {
            try await channel.consume(queue: queue, consumerTag: "explicit-tag")
        }
        #expect(duplicate?.code == .invalidArgument)
        let drained = Task {
            var count = 0
            for try await _ in consumer { count += 1 }
            return count
        }
        try await consumer.cancel()
        #expect(try await drained.value == 0)  // ended normally
        #expect(try await channel.queueDeclare(queue, passive: true).consumerCount == 0)

        try await channel.publish("a", routingKey: queue)
        for try await delivery in try await channel.consume(queue: queue) {
            try await delivery.ack()
            break  // leaving the loop cancels the consumer on the broker
        }
        var consumers: UInt32 = 1
        for _ in 0..<100 where consumers != 0 {
            try await Task.sleep(for: .milliseconds(20))
            consumers = try await channel.queueDeclare(queue, passive: true).consumerCount
        }
        #expect(consumers == 0)
        #expect(channel.isOpen)
        await connection.close()
    }

    /// Leaving the loop with the consumer still in scope cancels it, and the deliveries the
    /// loop never saw go back to the queue at once (the channel stays open and usable).
    @Test(arguments: [false, true])
    func leavingTheLoopGivesBackWhatItNeverSaw(onConnectionThread: Bool) async throws {
        let (connection, channel, queue) = try await setUp()
        for index in 0..<100 { try await channel.publish("m\(index)", routingKey: queue) }
        #expect(try await TestBroker.waitForMessageCount(100, in: queue, on: channel))
        try await channel.basicQos(prefetchCount: 50)
        let consumer = try await channel.consume(queue: queue)
        let executor = onConnectionThread ? connection.taskExecutor : nil
        let handled = try await withTaskExecutorPreference(executor) {
            var handled = 0
            for try await delivery in consumer {
                try await delivery.ack()
                handled += 1
                if handled == 5 { break }
            }
            return handled
        }
        #expect(handled == 5)
        // Within a generous limit: no consumer, and the 45 prefetched but unseen are ready again.
        let deadline = ContinuousClock.now + .seconds(30)
        var state = try await channel.queueDeclare(queue, passive: true)
        while (state.consumerCount != 0 || state.messageCount != 95), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
            state = try await channel.queueDeclare(queue, passive: true)
        }
        #expect(state.consumerCount == 0)
        #expect(state.messageCount == 95)
        #expect(channel.isOpen)
        // Iterating the abandoned consumer again ends at once (its consumer is cancelled).
        var again = consumer.makeAsyncIterator()
        #expect(try await again.next() == nil)
        await connection.close()
    }

    /// RabbitMQ answers consume and cancel from the queue's process, so a method sent after them
    /// on the same channel may be answered first: synchronous methods must not be pipelined.
    @Test func consumeAndCancelInterleavedWithOtherMethodsOnOneChannel() async throws {
        let (connection, channel, queue) = try await setUp()
        for _ in 0..<30 {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    let consumer = try await channel.consume(queue: queue)
                    try await consumer.cancel()
                }
                for _ in 0..<3 {
                    group.addTask { try await channel.queueDeclare(queue, passive: true) }
                }
                try await group.waitForAll()
            }
        }
        #expect(connection.isOpen)
        #expect(channel.isOpen)
        await connection.close()
    }

    @Test func exclusiveConsumerKeepsOthersOut() async throws {
        let (connection, channel, queue) = try await setUp()
        let consumer = try await channel.consume(queue: queue, exclusive: true)
        let other = try await connection.openChannel()
        let error = await #expect(throws: AMQPError.self) { try await other.consume(queue: queue) }
        #expect(error?.code == .accessRefused)
        #expect(error?.replyText?.contains("exclusive") == true)
        withExtendedLifetime(consumer) {}
        await connection.close()
    }

    @Test func recoverRedeliversAndRetiresOldTags() async throws {
        let (connection, channel, queue) = try await setUp()
        try await channel.publish("again", routingKey: queue)
        let consumer = try await channel.consume(queue: queue)
        var iterator = consumer.makeAsyncIterator()
        let first = try #require(try await iterator.next())
        try await channel.basicRecover(requeue: true)
        let stale = await #expect(throws: AMQPError.self) { try await first.ack() }
        #expect(stale?.code == .alreadyAcknowledged)
        let again = try #require(try await iterator.next())
        #expect(again.redelivered)
        #expect(again.bodyString == "again")
        try await again.ack()
        #expect(channel.isOpen)
        await connection.close()
    }

    @Test func closingTheChannelEndsItsConsumersNormally() async throws {
        let (connection, channel, queue) = try await setUp()
        let consumer = try await channel.consume(queue: queue)
        let drained = Task { for try await _ in consumer {} }
        await channel.close()
        try await drained.value
        await connection.close()
    }

    @Test func forcedConnectionCloseWithoutRecoveryEndsConsumersWithTheReason() async throws {
        var configuration = try TestBroker.configuration()
        configuration.recovery = .disabled
        let connection = try await AMQPConnection.open(configuration)
        let channel = try await connection.openChannel()
        let queue = try await channel.queueDeclare("", exclusive: true).name
        let consumer = try await channel.consume(queue: queue)
        let drained = Task { for try await _ in consumer {} }
        try await TestBroker.forceClose(connectionNamed: configuration.connectionName!, reason: "consumer test")
        let error = await #expect(throws: AMQPError.self) { try await drained.value }
        #expect(error?.code == .connectionClosed)
        #expect(error?.replyCode == 320)
    }
}
