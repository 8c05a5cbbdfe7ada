import Foundation
import OrderEvents
import RabbitMQ
import RabbitMQEvents
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing
import WireFixtures

/// What the handlers saw, in order.
actor Recorder {
    private(set) var calls: [(type: String, routingKey: String, context: EventContext)] = []
    private(set) var running = 0
    private(set) var mostRunning = 0

    func record(_ type: String, _ context: EventContext) {
        calls.append((type, context.routingKey, context))
    }

    func started() {
        running += 1
        mostRunning = max(mostRunning, running)
    }

    func finished() { running -= 1 }

    var count: Int { calls.count }
}

@Suite(
    "Typed events through the dispatcher against a real broker",
    .enabled(if: TestBroker.reachableOrRequired, "needs a broker; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"), .watchdog)
struct EventDispatcherTests {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Handlers whose `OrderCreated` handler always fails ("out of stock"), recording each attempt.
    func alwaysFailing(recordingInto recorder: Recorder = Recorder()) -> EventHandlers {
        var handlers = EventHandlers()
        handlers.on(OrderCreated.self) { _, context in
            await recorder.record("attempt", context)
            throw Failure(description: "out of stock")
        }
        return handlers
    }

    /// A fresh exchange and queue for one test.
    func configuration(_ name: String = #function) -> EventDispatcher.Configuration {
        let unique = TestBroker.uniqueName(name)
        return EventDispatcher.Configuration(queue: unique, exchange: unique + ".exchange", bindings: ["order.*"])
    }

    /// Runs a dispatcher while `body` runs, then shuts it down gracefully.
    func withDispatcher(
        _ configuration: EventDispatcher.Configuration, _ handlers: EventHandlers,
        connection dispatcherConnection: AMQPConnection.Configuration? = nil,
        afterShutdownTriggered: @Sendable () async -> Void = {},
        _ body: (AMQPConnection) async throws -> Void
    ) async throws {
        var configuration = configuration
        let (ready, readyContinuation) = AsyncStream.makeStream(of: Void.self)
        configuration.onReady = { readyContinuation.yield() }
        let dispatcher = EventDispatcher(
            connection: try dispatcherConnection ?? TestBroker.configuration(), configuration: configuration,
            handlers: handlers)
        let connection = try await TestBroker.connect()
        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    // A dispatcher that fails before it is ready ends the wait below.
                    defer { readyContinuation.finish() }
                    try await dispatcher.run()
                }
                var iterator = ready.makeAsyncIterator()
                if await iterator.next() == nil {
                    try await group.waitForAll()  // throws why it ended
                    Issue.record("the dispatcher returned before it was ready")
                    return
                }
                try await body(connection)
                trigger.triggerGracefulShutdown()
                await afterShutdownTriggered()
                try await group.waitForAll()
            }
        }
        await connection.close()
    }

    func waitUntil(_ condition: () async -> Bool, within limit: Duration = .seconds(30)) async throws -> Bool {
        let deadline = ContinuousClock.now + limit
        while await !condition(), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        return await condition()
    }

    /// Counts (ready) messages in the dispatcher's queue and dead-letter queue.
    func counts(_ configuration: EventDispatcher.Configuration) async throws -> (main: UInt32, dead: UInt32) {
        try await TestBroker.connect().withChannel { channel in
            let main = try await channel.queueDeclare(configuration.queue, passive: true).messageCount
            let dead = try await channel.queueDeclare(configuration.deadLetterQueue, passive: true).messageCount
            return (main, dead)
        }
    }

    func deadLetters(_ configuration: EventDispatcher.Configuration, expected: Int) async throws -> [AMQPDelivery] {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        var letters: [AMQPDelivery] = []
        let deadline = ContinuousClock.now + .seconds(30)
        while letters.count < expected, ContinuousClock.now < deadline {
            if let letter = try await channel.basicGet(queue: configuration.deadLetterQueue, autoAck: true) {
                letters.append(letter)
            } else {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        await connection.close()
        return letters
    }

    func cleanUp(_ configuration: EventDispatcher.Configuration) async throws {
        try await TestBroker.connect().withChannel { channel in
            try await channel.queueDelete(configuration.queue)
            try await channel.queueDelete(configuration.deadLetterQueue)
            try await channel.exchangeDelete(configuration.exchange)
            try await channel.exchangeDelete(configuration.deadLetterExchange)
        }
    }

    @Test func dispatcherKeepsHandlingAfterItsConnectionIsForceClosed() async throws {
        let metrics = testMetrics  // bootstrapped before the dispatcher creates its timer
        let configuration = configuration()
        let recorder = Recorder()
        var handlers = EventHandlers()
        handlers.on(OrderCreated.self) { _, context in await recorder.record("created", context) }
        let dispatcherConnection = try TestBroker.configuration("dispatcher")
        let item = OrderItem(sku: "SKU-1", quantity: 1, price: 1)
        func handledIDs() async -> Set<String> { Set(await recorder.calls.compactMap(\.context.messageID)) }

        try await withDispatcher(configuration, handlers, connection: dispatcherConnection) { connection in
            let publisher = try await EventPublisher(connection: connection, exchange: configuration.exchange)
            for index in 0..<20 {
                try await publisher.publish(OrderCreated(orderID: "o-\(index)", customerID: "c", items: [item]), messageID: "m-\(index)")
            }
            #expect(try await waitUntil { await handledIDs().count == 20 })
            try await TestBroker.forceClose(connectionNamed: dispatcherConnection.connectionName!, reason: "dispatcher test")
            for index in 20..<40 {
                try await publisher.publish(OrderCreated(orderID: "o-\(index)", customerID: "c", items: [item]), messageID: "m-\(index)")
            }
            // The dispatcher's connection recovered on its own and its consumer resumed.
            #expect(try await waitUntil { await handledIDs().count == 40 })
        }
        // Each handling was timed.
        let timer = try metrics.expectTimer("rabbitmq_events_handler_duration", [("queue", configuration.queue)])
        #expect(timer.values.count >= 40)
        #expect(try await counts(configuration) == (0, 0))
        try await cleanUp(configuration)
    }

    @Test func eachEventTypeReachesItsHandlerWithTheDocumentedTypeAndRoutingKey() async throws {
        let configuration = configuration()
        let recorder = Recorder()
        var handlers = EventHandlers()
        handlers.on(OrderCreated.self) { _, context in await recorder.record("created", context) }
        handlers.on(OrderCancelled.self) { _, context in await recorder.record("cancelled", context) }
        let item = OrderItem(sku: "SKU-1", quantity: 1, price: 1)

        try await withDispatcher(configuration, handlers) { connection in
            // A second queue sees the messages as they travel.
            let observer = try await connection.openChannel()
            let observed = try await observer.queueDeclare("", exclusive: true).name
            try await observer.queueBind(observed, exchange: configuration.exchange, routingKey: "#")

            let publisher = try await EventPublisher(connection: connection, exchange: configuration.exchange)
            try await publisher.publish(OrderCreated(orderID: "o-1", customerID: "c", items: [item]), messageID: "m-created")
            try await publisher.publish(OrderCancelled(orderID: "o-1", items: [item], reason: "r"), messageID: "m-cancelled")
            #expect(try await waitUntil { await recorder.count == 2 })

            let message = try #require(try await observer.basicGet(queue: observed, autoAck: true))
            #expect(message.routingKey == "order.created")
            #expect(message.properties.type == "OrderCreated")
            #expect(message.properties.contentType == "application/json")
            #expect(message.properties.deliveryMode == .persistent)
            #expect(message.properties.messageID == "m-created")
            #expect(message.properties.timestamp != nil)
        }
        let calls = await recorder.calls
        let created = try #require(calls.first { $0.type == "created" })
        #expect(created.routingKey == "order.created")
        #expect(created.context.eventType == "OrderCreated")
        #expect(created.context.messageID == "m-created")
        #expect(created.context.attempt == 1)
        #expect(!created.context.redelivered)
        let cancelled = try #require(calls.first { $0.type == "cancelled" })
        #expect(cancelled.routingKey == "order.cancelled")
        #expect(cancelled.context.eventType == "OrderCancelled")
        #expect(try await counts(configuration) == (0, 0))
        try await cleanUp(configuration)
    }

    /// Also with the consumer loop and handlers on the connection's thread.
    @Test(arguments: [false, true])
    func failingTwiceThenSucceedingIsRetriedAndAckedOnce(onConnectionThread: Bool) async throws {
        var configuration = configuration("retried-\(onConnectionThread)")
        configuration.runsHandlersOnConnectionThread = onConnectionThread
        let recorder = Recorder()
        var handlers = EventHandlers()
        handlers.on(OrderCreated.self) { _, context in
            await recorder.record("attempt", context)
            if context.attempt < 3 { throw Failure(description: "transient failure \(context.attempt)") }
        }
        try await withDispatcher(configuration, handlers) { connection in
            let publisher = try await EventPublisher(connection: connection, exchange: configuration.exchange)
            try await publisher.publish(OrderCreated(orderID: "o", customerID: "c", items: []))
            #expect(try await waitUntil { await recorder.count == 3 })
            try await Task.sleep(for: .milliseconds(300))  // a fourth call would show up by now
        }
        let calls = await recorder.calls
        #expect(calls.map(\.context.attempt) == [1, 2, 3])
        // Retried in place, on the one delivery: the broker never sent it again.
        #expect(calls.map(\.context.redelivered) == [false, false, false])
        #expect(calls.map(\.context.messageID) == [String?](repeating: calls.first?.context.messageID, count: 3))
        #expect(try await counts(configuration) == (0, 0))
        try await cleanUp(configuration)
    }

    @Test(arguments: [false, true])
    func alwaysFailingEndsInTheDeadLetterQueueAfterTheRetryLimit(onConnectionThread: Bool) async throws {
        var configuration = configuration("dead-lettered-\(onConnectionThread)")
        configuration.retry.maxAttempts = 3
        configuration.runsHandlersOnConnectionThread = onConnectionThread
        let recorder = Recorder()
        let handlers = alwaysFailing(recordingInto: recorder)
        try await withDispatcher(configuration, handlers) { connection in
            let publisher = try await EventPublisher(connection: connection, exchange: configuration.exchange)
            try await publisher.publish(OrderCreated(orderID: "doomed", customerID: "c", items: []), messageID: "m-doomed")
            let letters = try await deadLetters(configuration, expected: 1)
            let letter = try #require(letters.first)
            let headers = letter.properties.headers ?? [:]
            #expect(headers[EventDispatcher.DeadLetterHeader.reason]?.stringValue == "retries-exhausted")
            #expect(headers[EventDispatcher.DeadLetterHeader.attempts]?.int64Value == 3)
            #expect(headers[EventDispatcher.DeadLetterHeader.error]?.stringValue == "out of stock")
            #expect(headers[EventDispatcher.DeadLetterHeader.routingKey]?.stringValue == "order.created")
            #expect(letter.properties.messageID == "m-doomed")
            #expect(letter.properties.type == "OrderCreated")
            let order = try JSONEventCodec().decode(OrderCreated.self, from: letter.body)
            #expect(order.orderID == "doomed")
        }
        #expect(await recorder.calls.map(\.context.attempt) == [1, 2, 3])
        #expect(try await counts(configuration) == (0, 0))
        try await cleanUp(configuration)
    }

    /// A classic queue counts no deliveries (no `x-delivery-count`): the dispatcher counts the
    /// attempts itself, so a failing event is still retried a bounded number of times and then
    /// dead-lettered.
    @Test func retriesAreBoundedOnAClassicQueue() async throws {
        var configuration = configuration("classic")
        configuration.declaresTopology = false
        configuration.retry.maxAttempts = 3
        try await TestBroker.connect().withChannel { channel in
            try await channel.exchangeDeclare(configuration.exchange, type: .topic, durable: true)
            try await channel.exchangeDeclare(configuration.deadLetterExchange, type: .fanout, durable: true)
            try await channel.queueDeclare(configuration.deadLetterQueue, durable: true)
            try await channel.queueBind(configuration.deadLetterQueue, exchange: configuration.deadLetterExchange)
            try await channel.queueDeclare(configuration.queue, durable: true, arguments: ["x-queue-type": "classic"])
            try await channel.queueBind(configuration.queue, exchange: configuration.exchange, routingKey: "order.*")
        }
        let recorder = Recorder()
        var handlers = EventHandlers()
        handlers.on(OrderCreated.self) { _, context in
            await recorder.record("attempt", context)
            throw Failure(description: "always")
        }
        try await withDispatcher(configuration, handlers) { connection in
            let publisher = try await EventPublisher(connection: connection, exchange: configuration.exchange)
            try await publisher.publish(OrderCreated(orderID: "classic", customerID: "c", items: []), messageID: "m-classic")
            let letters = try await deadLetters(configuration, expected: 1)
            let letter = try #require(letters.first)
            #expect(letter.properties.headers?[EventDispatcher.DeadLetterHeader.reason]?.stringValue == "retries-exhausted")
            #expect(letter.properties.headers?[EventDispatcher.DeadLetterHeader.attempts]?.int64Value == 3)
            #expect(letter.properties.messageID == "m-classic")
        }
        let attempts = await recorder.calls.map(\.context.attempt)
        #expect(attempts.count == 3, "the handler ran \(attempts.count) times")
        #expect(attempts.prefix(10) == [1, 2, 3])
        #expect(try await counts(configuration) == (0, 0))
        try await cleanUp(configuration)
    }

    @Test func poisonBodiesAndUnknownTypesGoStraightToTheDeadLetterQueue() async throws {
        let configuration = configuration()
        let recorder = Recorder()
        var handlers = EventHandlers()
        handlers.on(OrderCreated.self) { _, context in await recorder.record("created", context) }
        try await withDispatcher(configuration, handlers) { connection in
            let channel = try await connection.openChannel()
            try await channel.confirmSelect()
            try await channel.publish(
                "{ this is not an order", exchange: configuration.exchange, routingKey: "order.created",
                properties: .init(contentType: "application/json", messageID: "poison", type: "OrderCreated"))
            try await channel.publish(
                #"{"orderID":"x"}"#, exchange: configuration.exchange, routingKey: "order.created",
                properties: .init(messageID: "unknown", type: "OrderTeleported"))
            let letters = try await deadLetters(configuration, expected: 2)
            let reasons = Dictionary(
                letters.map { ($0.properties.messageID ?? "", $0.properties.headers?[EventDispatcher.DeadLetterHeader.reason]?.stringValue) },
                uniquingKeysWith: { first, _ in first })
            #expect(reasons == ["poison": "undecodable", "unknown": "unknown-type"])
            #expect(letters.allSatisfy { $0.properties.headers?[EventDispatcher.DeadLetterHeader.attempts]?.int64Value == 1 })
        }
        #expect(await recorder.count == 0)
        #expect(try await counts(configuration) == (0, 0))
        try await cleanUp(configuration)
    }

    /// Messages other clients send (``HostileMessages``), failing in their handler until they are
    /// dead-lettered: the dispatcher republishes each as its dead letter, and
    /// every property and header entry it received leaves unchanged (its own headers follow).
    @Test func messagesFromOtherClientsAreRetriedAndDeadLetteredUnchanged() async throws {
        let hostile = ForwardingTests.decodable.filter(\.rabbitMQTakesIt)
        let (received, _) = try await ForwardingTests.forward(hostile.map(\.properties), expecting: hostile.count)
        var configuration = configuration()
        configuration.retry.maxAttempts = 2
        let handlers = alwaysFailing()
        var sent: [String: BasicProperties] = [:]
        try await withDispatcher(configuration, handlers) { connection in
            let channel = try await connection.openChannel()
            try await channel.confirmSelect()
            for (index, var properties) in received.enumerated() {
                // Its own type (Latin-1 in one of them) is kept: that one is an unknown type.
                if properties.type == nil { properties.type = OrderCreated.eventType }
                let order = OrderCreated(orderID: "hostile-\(index)", customerID: "c", items: [])
                try await channel.publish(
                    try JSONEventCodec().encode(order), exchange: configuration.exchange, routingKey: "order.created",
                    properties: properties)
                sent[order.orderID] = properties
            }
            let letters = try await deadLetters(configuration, expected: hostile.count)
            #expect(letters.count == hostile.count)
            for letter in letters {
                let orderID = try JSONEventCodec().decode(OrderCreated.self, from: letter.body).orderID
                let original = try #require(sent[orderID])
                let name = hostile[Int(orderID.dropFirst("hostile-".count))!].name
                for property in BasicProperties.TextProperty.allCases {
                    #expect(letter.properties.bytes(of: property) == original.bytes(of: property), "\(name): \(property)")
                }
                #expect(letter.properties.timestamp == original.timestamp, "\(name)")
                #expect(letter.properties.deliveryModeValue == original.deliveryModeValue, "\(name)")
                #expect(letter.properties.priority == original.priority, "\(name)")
                let headers = letter.properties.headers ?? [:]
                if BrokerVersion.isRabbitMQ4(connection) {
                    // RabbitMQ 4 re-encodes the headers of every message it takes (sorted, the
                    // first of duplicate keys, `L` as `l`): the original entries are all there,
                    // among the dispatcher's own, as the broker delivers them.
                    let own = Set(headers.keys.filter { $0.hasPrefix("x-dead-letter-") })
                    let theirs = FieldTable(headers.entries.filter { !own.contains($0.key) })
                    #expect(theirs == BrokerVersion.headersAsDelivered(original.headers ?? [:], by: connection), "\(name)")
                } else {
                    // The quorum queue makes RabbitMQ 3.10 re-encode the headers, writing an `L` as
                    // an `l` with the same bits; the rest is exact, in order, the dispatcher's after.
                    let originalEntries = BrokerVersion.signingUnsigned64(original.headers?.entries ?? [])
                    #expect(Array(headers.entries.prefix(originalEntries.count)) == originalEntries, "\(name)")
                }
                let reason = headers[EventDispatcher.DeadLetterHeader.reason]?.stringValue
                #expect(reason == (original.type == OrderCreated.eventType ? "retries-exhausted" : "unknown-type"), "\(name)")
            }
        }
        #expect(try await counts(configuration) == (0, 0))
        try await cleanUp(configuration)
    }

    /// Headers nested 150 levels deep: librabbitmq 0.11 decodes them and the dispatcher retries
    /// and dead-letters the event itself; 0.14 and later refuse to decode them, so each connection
    /// that receives the message fails and recovery brings it back, until the quorum queue's
    /// delivery limit (`maxAttempts` + 2) makes the broker dead-letter it. Either way it ends in
    /// the dead-letter queue instead of circling for ever.
    @Test func aMessageNested150LevelsDeepEndsInTheDeadLetterQueue() async throws {
        var configuration = configuration()
        configuration.retry.maxAttempts = 2
        let handlers = alwaysFailing()
        var nested: FieldValue = 7
        for _ in 0..<150 { nested = ["n": nested] }
        try await withDispatcher(configuration, handlers) { connection in
            let publisher = try await EventPublisher(connection: connection, exchange: configuration.exchange)
            try await publisher.publish(OrderCreated(orderID: "deep", customerID: "c", items: []), headers: ["root": nested])
            // Counted rather than read: with librabbitmq 0.14 and later, reading it fails too.
            let deadline = ContinuousClock.now + .seconds(120)
            while try await counts(configuration).dead < 1, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(try await counts(configuration) == (0, 1))
        }
        try await cleanUp(configuration)
    }

    /// Attempt counts come from headers anyone may write: the largest ones saturate instead of
    /// wrapping round to a negative attempt that would be retried from the start.
    @Test func attemptCountsFromHeadersSaturate() async throws {
        let configuration = configuration()
        let recorder = Recorder()
        let handlers = alwaysFailing(recordingInto: recorder)
        try await withDispatcher(configuration, handlers) { connection in
            let publisher = try await EventPublisher(connection: connection, exchange: configuration.exchange)
            try await publisher.publish(
                OrderCreated(orderID: "counted", customerID: "c", items: []),
                headers: ["x-delivery-count": .int64(.max)])
            let letters = try await deadLetters(configuration, expected: 1)
            #expect(letters.first?.properties.headers?[EventDispatcher.DeadLetterHeader.reason]?.stringValue == "retries-exhausted")
        }
        let attempts = await recorder.calls.map(\.context.attempt)
        #expect(attempts.count == 1)
        #expect(attempts.allSatisfy { $0 >= configuration.retry.maxAttempts })
        try await cleanUp(configuration)
    }

    @Test func publisherCanSendTransientAndNotMandatoryEvents() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let exchange = TestBroker.uniqueName("event-options")
        try await channel.exchangeDeclare(exchange, type: .topic)
        let order = OrderCreated(orderID: "o-1", customerID: "c", items: [])

        // No queue bound: the default (mandatory) fails, a non-mandatory event is dropped.
        let strict = try await EventPublisher(connection: connection, exchange: exchange, declareExchange: false)
        await #expect { try await strict.publish(order) } throws: { ($0 as? AMQPError)?.code == .publishReturned }
        let relaxed = try await EventPublisher(
            connection: connection, exchange: exchange, declareExchange: false, deliveryMode: .transient,
            mandatory: false)
        try await relaxed.publish(order)

        let queue = try await channel.queueDeclare("", exclusive: true).name
        try await channel.queueBind(queue, exchange: exchange, routingKey: "order.*")
        try await relaxed.publish(order)
        try await strict.publish(order)
        #expect(try await TestBroker.waitForMessageCount(2, in: queue, on: channel))
        let first = try #require(try await channel.basicGet(queue: queue, autoAck: true))
        let second = try #require(try await channel.basicGet(queue: queue, autoAck: true))
        #expect(first.properties.deliveryMode == .transient)
        #expect(second.properties.deliveryMode == .persistent)
        try await channel.exchangeDelete(exchange)
        await connection.close()
    }

    @Test(arguments: [UInt16(8), 2])
    func handlersRunConcurrentlyUpToThePrefetch(prefetch: UInt16) async throws {
        var configuration = configuration("concurrency\(prefetch)")
        configuration.prefetch = prefetch
        let recorder = Recorder()
        var handlers = EventHandlers()
        handlers.on(OrderCreated.self) { _, context in
            await recorder.started()
            // The first handlers wait (up to 10 s) until `prefetch` of them run at once: on a
            // loaded machine one could otherwise finish before the last of them started.
            let deadline = ContinuousClock.now + .seconds(10)
            while await recorder.mostRunning < Int(prefetch), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
            }
            try await Task.sleep(for: .milliseconds(100))
            await recorder.finished()
            await recorder.record("created", context)
        }
        try await withDispatcher(configuration, handlers) { connection in
            let publisher = try await EventPublisher(connection: connection, exchange: configuration.exchange)
            var confirmations: [PublishConfirmation] = []
            for index in 0..<40 {
                confirmations.append(
                    try await publisher.publishWithoutWaiting(OrderCreated(orderID: "o-\(index)", customerID: "c", items: [])))
            }
            for confirmation in confirmations { try await confirmation.wait() }
            #expect(try await waitUntil({ await recorder.count == 40 }, within: .seconds(60)))
        }
        // Never more than the prefetch at once, and the limit is used: with slow handlers the
        // work spreads over exactly `prefetch` concurrent handlers.
        let mostRunning = await recorder.mostRunning
        #expect(mostRunning == Int(prefetch))
        #expect(try await counts(configuration) == (0, 0))
        try await cleanUp(configuration)
    }

    @Test func inventoryDaemonShutsDownGracefullyUnderLoadAndLosesNothing() async throws {
        let configuration = configuration()
        let daemon = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("inventory-daemon").path
        let record = FileManager.default.temporaryDirectory.appendingPathComponent("handled-\(UUID().uuidString)").path
        let database = record + ".sqlite"
        defer { try? FileManager.default.removeItem(atPath: record) }
        let arguments = [
            "--queue", configuration.queue, "--exchange", configuration.exchange, "--record", record,
            "--database", database, "--work-milliseconds", "2", "--prefetch", "16", "--no-answers",
        ]
        /// The message ids of the events applied, from the record's lines.
        func handled() -> [Substring] {
            ((try? String(contentsOfFile: record, encoding: .utf8)) ?? "").split(separator: "\n")
                .map { $0.split(separator: " ")[1] }
        }

        let first = try ChildProcess.start(daemon, arguments, environment: ["AMQP_URL": TestBroker.url])
        #expect(try await first.waitForOutput(containing: "ready", within: .seconds(180)), "\(first.output)")

        // SIGTERM midway, while the events are still being published (a slow publisher on a busy
        // machine must not let the daemon finish first): in-flight events finish and are
        // acknowledged; the rest stay queued.
        let stopper = Task {
            let deadline = ContinuousClock.now + .seconds(120)
            while handled().count < 2_000, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
            first.signal(SIGTERM)
            return handled().count >= 2_000
        }
        let connection = try await TestBroker.connect()
        let publisher = try await EventPublisher(connection: connection, exchange: configuration.exchange, window: 2000)
        var confirmations: [PublishConfirmation] = []
        for index in 0..<10_000 {
            confirmations.append(
                try await publisher.publishWithoutWaiting(
                    OrderCreated(orderID: "o-\(index)", customerID: "c", items: []), messageID: "event-\(index)"))
        }
        for confirmation in confirmations { try await confirmation.wait() }
        #expect(try await stopper.value, "the first daemon never handled 2,000 events")
        #expect(await first.waitForExit() == 0, "\(first.output)")
        let handledByFirst = handled().count
        #expect(handledByFirst < 10_000)

        let second = try ChildProcess.start(daemon, arguments, environment: ["AMQP_URL": TestBroker.url])
        #expect(try await second.waitForOutput(containing: "ready", within: .seconds(180)), "\(second.output)")
        #expect(try await waitUntil({ Set(handled()).count >= 10_000 }, within: .seconds(180)))
        try await Task.sleep(for: .milliseconds(500))
        second.signal(SIGTERM)
        #expect(await second.waitForExit() == 0, "\(second.output)")

        let lines = handled()
        let unique = Set(lines)
        print("graceful shutdown: first daemon handled \(handledByFirst), in all \(lines.count) handlings of \(unique.count) events")
        #expect(unique.count == 10_000)  // every event handled at least once
        #expect(lines.count == unique.count)  // none handled twice: everything acked stayed acked
        #expect(try await counts(configuration) == (0, 0))  // nothing left, nothing dead-lettered
        await connection.close()
        try await cleanUp(configuration)
    }
}
