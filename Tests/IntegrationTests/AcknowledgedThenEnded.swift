import Foundation
import RabbitMQ
import Testing

/// Consumes and acknowledges 50 messages of a quorum queue on a connection of its own, ends it
/// as `ending` says right away, and counts the messages that came back: acknowledged ones whose
/// acknowledgement the broker had not applied when the consumer went.
enum AcknowledgedThenEnded {
    static func returned(
        singleActiveConsumer: Bool = false,
        ending: @Sendable (AMQPConnection, AMQPChannel, AMQPConsumer, String) async throws -> Void
    ) async throws -> UInt32 {
        let queue = TestBroker.uniqueName("acknowledged-then-ended")
        var arguments: FieldTable = ["x-queue-type": "quorum"]
        if singleActiveConsumer { arguments["x-single-active-consumer"] = true }
        try await TestBroker.declareQuorumQueue(queue, arguments: arguments)
        let setup = try await TestBroker.connect()
        let channel = try await setup.openChannel()
        try await channel.queueDeclare(queue, durable: true, arguments: arguments)
        try await channel.confirmSelect()
        for index in 0..<50 { try await channel.publish("\(index)", routingKey: queue) }
        let consuming = try await TestBroker.connect()
        let consumingChannel = try await consuming.openChannel()
        try await consumingChannel.basicQos(prefetchCount: 64)
        let consumer = try await consumingChannel.consume(queue: queue)
        // Read with an iterator kept alive: leaving a loop would cancel the consumer first.
        var iterator = consumer.makeAsyncIterator()
        for _ in 0..<50 { try await iterator.next()!.ack() }
        try await ending(consuming, consumingChannel, consumer, queue)
        withExtendedLifetime(iterator) {}
        await consuming.close()
        // The returns, if any, are applied by the time a passive declare answers after a pause.
        try await Task.sleep(for: .milliseconds(300))
        let returned = try await channel.queueDeclare(queue, passive: true).messageCount
        try await channel.queueDelete(queue)
        await setup.close()
        return returned
    }
}
