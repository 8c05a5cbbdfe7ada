import Foundation
import OrderEvents
import RabbitMQ
import RabbitMQEvents
import Testing

extension EventDispatcherTests {
    /// Events that failed while a bug was in place are listed with their reasons, stay in the
    /// dead-letter queue while listed, and once the bug is fixed go back to their original
    /// exchange (each confirmed) and are handled as new, without the dead-letter headers.
    @Test func deadLettersAreListedThenRedrivenOnceTheHandlerIsFixed() async throws {
        var configuration = configuration()
        configuration.retry = .none
        let recorder = Recorder()
        let broken = Broken()
        var handlers = EventHandlers()
        handlers.on(OrderCreated.self) { _, context in
            if broken.isBroken { throw Failure(description: "bug 42") }
            await recorder.record("handled", context)
        }
        try await withDispatcher(configuration, handlers) { connection in
            let publisher = try await EventPublisher(connection: connection, exchange: configuration.exchange)
            for index in 0..<3 {
                try await publisher.publish(OrderCreated(orderID: "o-\(index)", customerID: "c", items: []), messageID: "m-\(index)")
            }
            try await publisher.publish(OrderCancelled(orderID: "o-0", items: [], reason: "r"), messageID: "m-unknown")
            #expect(try await waitUntil { (try? await counts(configuration).dead) == 4 })

            // The three orders are handled in lanes of their own, side by side (only one order's
            // events are ordered), so they reach the dead-letter queue in any order.
            let deadLetters = DeadLetters(connection: connection, queue: configuration.queue)
            let letters = try await deadLetters.list()
            #expect(Set(letters.compactMap(\.messageID)) == ["m-0", "m-1", "m-2", "m-unknown"] && letters.count == 4)
            let reasons = Dictionary(uniqueKeysWithValues: letters.map { ($0.messageID ?? "", $0.reason) })
            #expect(reasons == ["m-0": "retries-exhausted", "m-1": "retries-exhausted", "m-2": "retries-exhausted", "m-unknown": "unknown-type"])
            let failed = try #require(letters.first { $0.messageID == "m-0" })
            #expect(failed.error == "bug 42")
            #expect(failed.attempts == 1)
            #expect(failed.originalExchange == configuration.exchange)
            #expect(failed.originalRoutingKey == "order.created")
            #expect(try await counts(configuration).dead == 4, "listing leaves them where they are")
            #expect(try await deadLetters.list().map(\.messageID) == letters.map(\.messageID), "in the queue's order, again")

            broken.fix()
            let sent = try await deadLetters.redrive { $0.eventType == OrderCreated.eventType }
            #expect(sent == 3)
            #expect(try await waitUntil { await recorder.count == 3 })
            #expect(try await deadLetters.list().map(\.messageID) == ["m-unknown"])
        }
        let calls = await recorder.calls
        #expect(Set(calls.compactMap(\.context.messageID)) == ["m-0", "m-1", "m-2"])
        #expect(calls.allSatisfy { $0.context.attempt == 1 })
        #expect(calls.allSatisfy { call in !call.context.headers.keys.contains { $0.hasPrefix("x-dead-letter-") } })
        try await cleanUp(configuration)
    }

    /// The command line: `rabbitmq-events dead-letters list` and `redrive --message-id`.
    @Test func theCommandListsAndRedrivesDeadLetters() async throws {
        var configuration = configuration()
        configuration.retry = .none
        let broken = Broken()
        let recorder = Recorder()
        var handlers = EventHandlers()
        handlers.on(OrderCreated.self) { _, context in
            if broken.isBroken { throw Failure(description: "bug 43") }
            await recorder.record("handled", context)
        }
        let tool = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("rabbitmq-events").path
        try await withDispatcher(configuration, handlers) { connection in
            let publisher = try await EventPublisher(connection: connection, exchange: configuration.exchange)
            for index in 0..<2 {
                try await publisher.publish(OrderCreated(orderID: "o-\(index)", customerID: "c", items: []), messageID: "cli-\(index)")
            }
            #expect(try await waitUntil { (try? await counts(configuration).dead) == 2 })
            let list = try ChildProcess.start(tool, ["dead-letters", "list", "--queue", configuration.queue], environment: ["AMQP_URL": TestBroker.url])
            #expect(await list.waitForExit() == 0, "\(list.output)")
            #expect(list.output.contains("cli-0\tOrderCreated\tretries-exhausted\t1\t\(configuration.exchange) order.created\tbug 43"), "\(list.output)")
            #expect(list.output.contains("2 dead letters in \(configuration.deadLetterQueue)"), "\(list.output)")

            broken.fix()
            let redrive = try ChildProcess.start(
                tool, ["dead-letters", "redrive", "--queue", configuration.queue, "--message-id", "cli-1"],
                environment: ["AMQP_URL": TestBroker.url])
            #expect(await redrive.waitForExit() == 0, "\(redrive.output)")
            #expect(redrive.output.contains("sent back 1 dead letter"), "\(redrive.output)")
            #expect(try await waitUntil { await recorder.count == 1 })
            #expect(try await counts(configuration).dead == 1)
        }
        #expect(await recorder.calls.map(\.context.messageID) == ["cli-1"])
        try await cleanUp(configuration)
    }
}

/// A switch the tests flip to "fix the bug".
final class Broken: Sendable {
    private let broken = Locked(true)
    var isBroken: Bool { broken.withLock { $0 } }
    func fix() { broken.withLock { $0 = false } }
}
