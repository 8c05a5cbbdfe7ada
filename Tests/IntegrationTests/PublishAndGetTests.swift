import Foundation
import RabbitMQ
import Testing

@Suite(
    "Publishing and basic.get against a real broker",
    .enabled(if: TestBroker.reachableOrRequired, "needs a broker; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"), .watchdog)
struct PublishAndGetTests {
    @Test func messageRoundTripsWithEveryProperty() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let queue = try await channel.queueDeclare("", exclusive: true).name
        let properties = BasicProperties(
            contentType: "application/json", contentEncoding: "identity",
            headers: ["tenant": "eu", "attempt": .int32(3), "nested": ["list": [1, "two"]]],
            deliveryMode: .persistent, priority: 5, correlationID: "corr-1", replyTo: "replies",
            expiration: "60000", messageID: "msg-1", timestamp: AMQPTimestamp(secondsSince1970: 1_790_000_000),
            type: "order.created", userID: "guest", appID: "tests")

        try await channel.publish(#"{"orderId":"ord-1"}"#, routingKey: queue, properties: properties)
        let message = try #require(try await channel.basicGet(queue: queue, autoAck: true))
        #expect(message.bodyString == #"{"orderId":"ord-1"}"#)
        #expect(message.properties == BrokerVersion.propertiesAsDelivered(properties, by: connection))
        #expect(message.routingKey == queue)
        #expect(message.exchange == "")
        #expect(!message.redelivered)
        #expect(message.messageCount == 0)
        #expect(try await channel.basicGet(queue: queue) == nil)
        await connection.close()
    }

    @Test(arguments: [0, 1, 131_072 - 8, 131_072, 1 << 20])
    func bodiesOfEverySizeRoundTrip(size: Int) async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let queue = try await channel.queueDeclare("", exclusive: true).name
        let body = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        try await channel.publish(body, routingKey: queue)
        let message = try #require(try await channel.basicGet(queue: queue, autoAck: true))
        #expect(message.body.count == size)
        #expect(message.body == body)
        #expect(message.properties == BasicProperties())
        await connection.close()
    }

    @Test func getsInterleaveAcrossChannels() async throws {
        let connection = try await TestBroker.connect()
        let setup = try await connection.openChannel()
        let queues = try await (0..<4).asyncMap { _ in try await setup.queueDeclare("", exclusive: true).name }
        let big = [UInt8](repeating: 0xAB, count: 300_000)  // several frames per message
        for queue in queues {
            for _ in 0..<5 { try await setup.publish(big, routingKey: queue) }
        }
        // Publishing is asynchronous: wait until the broker has queued them all.
        for queue in queues {
            for _ in 0..<200 where try await setup.queueDeclare(queue, passive: true).messageCount < 5 {
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        try await withThrowingTaskGroup(of: Int.self) { group in
            for queue in queues {
                group.addTask {
                    let channel = try await connection.openChannel()
                    var count = 0
                    while let message = try await channel.basicGet(queue: queue, autoAck: true) {
                        #expect(message.body == big)
                        count += 1
                    }
                    return count
                }
            }
            let total = try await group.reduce(0, +)
            #expect(total == 20)
        }
        await connection.close()
    }

    @Test func invalidPropertiesAreRejectedBeforeAnythingIsSent() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let queue = try await channel.queueDeclare("", exclusive: true).name
        let long = String(repeating: "x", count: 256)
        for properties in [BasicProperties(contentType: long), BasicProperties(messageID: long),
                           BasicProperties(headers: ["big": .string(String(repeating: "h", count: 200_000))])] {
            let error = await #expect(throws: AMQPError.self) {
                try await channel.publish("x", routingKey: queue, properties: properties)
            }
            #expect(error?.code == .invalidArgument)
        }
        let badKey = await #expect(throws: AMQPError.self) { try await channel.publish("x", routingKey: long) }
        #expect(badKey?.code == .invalidArgument)
        // Nothing half-sent: the connection and channel still work.
        try await channel.publish("ok", routingKey: queue)
        #expect(try await channel.basicGet(queue: queue, autoAck: true)?.bodyString == "ok")
        #expect(connection.isOpen)
        await connection.close()
    }

    @Test func publishToAMissingExchangeClosesTheChannelWith404() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        try await channel.publish("x", exchange: TestBroker.uniqueName("no-such-exchange"), routingKey: "k")
        let error = await #expect(throws: AMQPError.self) {
            // The broker's channel.close arrives asynchronously; the next call sees it.
            for _ in 0..<100 {
                try await channel.queueDeclare("", exclusive: true)
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        #expect(error?.replyCode == 404)
        #expect(connection.isOpen)
        await connection.close()
    }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
