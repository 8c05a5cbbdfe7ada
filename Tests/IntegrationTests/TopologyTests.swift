import Foundation
import RabbitMQ
import Testing

@Suite(
    "Exchanges, queues and bindings against a real broker",
    .enabled(if: TestBroker.reachableOrRequired, "needs a broker; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"), .watchdog)
struct TopologyTests {
    /// Lets the broker finish routing what the channel published: a round trip on it.
    private func settle(_ channel: AMQPChannel, _ queues: [String]) async throws {
        for queue in queues { try await channel.queueDeclare(queue, passive: true) }
    }

    @Test func topicRouting() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let exchange = TestBroker.uniqueName("orders")
        try await channel.exchangeDeclare(exchange, type: .topic, autoDelete: true)
        let star = try await channel.queueDeclare("", exclusive: true).name
        let hash = try await channel.queueDeclare("", exclusive: true).name
        let inventory = try await channel.queueDeclare("", exclusive: true).name
        try await channel.queueBind(star, exchange: exchange, routingKey: "order.*")
        try await channel.queueBind(hash, exchange: exchange, routingKey: "#")
        try await channel.queueBind(inventory, exchange: exchange, routingKey: "inventory.*")

        try await channel.publish("created", exchange: exchange, routingKey: "order.created")
        try await settle(channel, [star, hash, inventory])
        #expect(try await channel.basicGet(queue: star, autoAck: true)?.routingKey == "order.created")
        #expect(try await channel.basicGet(queue: hash, autoAck: true)?.bodyString == "created")
        #expect(try await channel.basicGet(queue: inventory, autoAck: true) == nil)

        // order.* matches exactly one word; # matches any number.
        try await channel.publish("deep", exchange: exchange, routingKey: "order.created.eu")
        try await settle(channel, [star, hash])
        #expect(try await channel.basicGet(queue: star, autoAck: true) == nil)
        #expect(try await channel.basicGet(queue: hash, autoAck: true)?.bodyString == "deep")

        try await channel.queueUnbind(hash, exchange: exchange, routingKey: "#")
        try await channel.publish("after-unbind", exchange: exchange, routingKey: "order.cancelled")
        try await settle(channel, [star, hash])
        #expect(try await channel.basicGet(queue: hash, autoAck: true) == nil)
        #expect(try await channel.basicGet(queue: star, autoAck: true)?.bodyString == "after-unbind")
        await connection.close()
    }

    @Test func exchangeToExchangeBindings() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let source = TestBroker.uniqueName("source")
        let destination = TestBroker.uniqueName("destination")
        try await channel.exchangeDeclare(source, type: .fanout)
        try await channel.exchangeDeclare(destination, type: .direct, autoDelete: true, internal: true)
        let queue = try await channel.queueDeclare("", exclusive: true).name
        try await channel.queueBind(queue, exchange: destination, routingKey: "k")
        try await channel.exchangeBind(destination: destination, source: source)

        try await channel.publish("via-e2e", exchange: source, routingKey: "k")
        try await settle(channel, [queue])
        #expect(try await channel.basicGet(queue: queue, autoAck: true)?.bodyString == "via-e2e")

        try await channel.exchangeUnbind(destination: destination, source: source)
        try await channel.publish("unrouted", exchange: source, routingKey: "k")
        try await settle(channel, [queue])
        #expect(try await channel.basicGet(queue: queue, autoAck: true) == nil)

        // Publishing to an internal exchange is refused (403) and closes the channel.
        try await channel.publish("x", exchange: destination, routingKey: "k")
        let refused = await #expect(throws: AMQPError.self) { try await channel.queueDeclare(queue, passive: true) }
        #expect(refused?.replyCode == 403)
        try await connection.openChannel().exchangeDelete(source)
        await connection.close()
    }

    @Test func exchangeDeclarePassiveAndDelete() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let name = TestBroker.uniqueName("exchange")
        try await channel.exchangeDeclare(name, type: .headers, durable: true, arguments: ["alternate-exchange": "amq.fanout"])
        try await channel.exchangeDeclare(name, passive: true)
        let queue = try await channel.queueDeclare("", exclusive: true).name
        try await channel.queueBind(queue, exchange: name, arguments: ["x-match": "all", "tenant": "eu"])

        let inUse = await #expect(throws: AMQPError.self) { try await channel.exchangeDelete(name, ifUnused: true) }
        #expect(inUse?.code == .preconditionFailed)
        let channel2 = try await connection.openChannel()
        try await channel2.exchangeDelete(name)
        let gone = await #expect(throws: AMQPError.self) { try await channel2.exchangeDeclare(name, passive: true) }
        #expect(gone?.code == .notFound)

        // Redeclaring with another type is a 406.
        let channel3 = try await connection.openChannel()
        let other = TestBroker.uniqueName("typed")
        try await channel3.exchangeDeclare(other, type: .topic, autoDelete: true)
        let mismatch = await #expect(throws: AMQPError.self) {
            try await channel3.exchangeDeclare(other, type: .fanout, autoDelete: true)
        }
        #expect(mismatch?.code == .preconditionFailed)
        #expect(mismatch?.replyText?.contains("inequivalent arg 'type'") == true)
        await connection.close()
    }

    @Test func queueArgumentsCountsPurgeAndDelete() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let name = TestBroker.uniqueName("limited")
        let declared = try await channel.queueDeclare(
            name, durable: true,
            arguments: ["x-dead-letter-exchange": "amq.fanout", "x-dead-letter-routing-key": "dead",
                        "x-message-ttl": 60_000, "x-max-length": 100, "x-overflow": "reject-publish"])
        #expect(declared.name == name)
        #expect(declared.messageCount == 0)
        for index in 0..<3 { try await channel.publish("m\(index)", routingKey: name) }
        #expect(try await TestBroker.waitForMessageCount(3, in: name, on: channel))

        let notEmpty = await #expect(throws: AMQPError.self) { try await channel.queueDelete(name, ifEmpty: true) }
        #expect(notEmpty?.code == .preconditionFailed)
        let channel2 = try await connection.openChannel()
        #expect(try await channel2.queuePurge(name) == 3)
        for index in 0..<2 { try await channel2.publish("n\(index)", routingKey: name) }
        #expect(try await TestBroker.waitForMessageCount(2, in: name, on: channel2))
        let consuming = try await connection.openChannel()
        let consumer = try await consuming.consume(queue: name, exclusive: true)
        let inUse = try await connection.openChannel()
        let unusedError = await #expect(throws: AMQPError.self) { try await inUse.queueDelete(name, ifUnused: true) }
        #expect(unusedError?.code == .preconditionFailed)
        // Closing the consumer's channel puts its unacknowledged deliveries back.
        await consuming.close()
        withExtendedLifetime(consumer) {}
        #expect(try await TestBroker.waitForMessageCount(2, in: name, on: channel2))
        #expect(try await channel2.queueDelete(name) == 2)
        await connection.close()
    }

    @Test func quorumAndStreamQueues() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let quorum = TestBroker.uniqueName("quorum")
        let stream = TestBroker.uniqueName("stream")
        try await TestBroker.declareQuorumQueue(quorum, arguments: ["x-delivery-limit": 5])
        try await channel.queueDeclare(quorum, durable: true, arguments: ["x-queue-type": "quorum", "x-delivery-limit": 5])
        try await channel.queueDeclare(stream, durable: true, arguments: ["x-queue-type": "stream"])
        try await channel.publish("q", routingKey: quorum, properties: .init(deliveryMode: .persistent))
        _ = try await channel.queueDeclare(quorum, passive: true)
        let message = try #require(try await channel.basicGet(queue: quorum))
        #expect(message.bodyString == "q")
        try await message.ack()
        // A quorum queue refuses a classic-only argument.
        let refused = await #expect(throws: AMQPError.self) {
            try await channel.queueDeclare(TestBroker.uniqueName("bad"), durable: true,
                                           arguments: ["x-queue-type": "quorum", "x-max-priority": 5])
        }
        #expect(refused?.code == .preconditionFailed)
        let cleanup = try await connection.openChannel()
        try await cleanup.queueDelete(quorum)
        try await cleanup.queueDelete(stream)
        await connection.close()
    }

    @Test func exclusiveQueueOfAnotherConnectionIsLocked() async throws {
        let owner = try await TestBroker.connect()
        let other = try await TestBroker.connect()
        let queue = try await owner.openChannel().queueDeclare(TestBroker.uniqueName("mine"), exclusive: true).name
        let error = await #expect(throws: AMQPError.self) {
            try await other.openChannel().queueDeclare(queue, passive: true)
        }
        #expect(error?.code == .resourceLocked)
        #expect(error?.replyCode == 405)
        await owner.close()
        await other.close()
    }

    @Test func transactionsCommitAndRollBack() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let queue = try await channel.queueDeclare("", exclusive: true).name
        try await channel.txSelect()
        try await channel.publish("rolled-back", routingKey: queue)
        try await channel.txRollback()
        try await channel.publish("committed", routingKey: queue)
        try await channel.txCommit()
        #expect(try await channel.queueDeclare(queue, passive: true).messageCount == 1)
        let message = try #require(try await channel.basicGet(queue: queue))
        #expect(message.bodyString == "committed")
        try await message.ack()
        try await channel.txCommit()
        #expect(try await channel.queueDeclare(queue, passive: true).messageCount == 0)
        await connection.close()
    }
}
