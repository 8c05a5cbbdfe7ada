import Foundation
import RabbitMQ
import Testing

@Suite(
    "Publisher confirms and returns against a real broker",
    .enabled(if: TestBroker.reachableOrRequired, "needs a broker; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"), .watchdog)
struct ConfirmTests {
    @Test func hundredThousandConfirmedThroughAWindowOfAThousand() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let queue = try await channel.queueDeclare("", exclusive: true).name
        try await channel.confirmSelect(window: 1000)
        let body = [UInt8](repeating: 7, count: 100)
        var confirmations: [PublishConfirmation] = []
        confirmations.reserveCapacity(100_000)
        for _ in 0..<100_000 {
            confirmations.append(try await channel.publishWithoutWaiting(body, routingKey: queue))
        }
        for confirmation in confirmations { try await confirmation.wait() }
        // Each publish got its own sequence number and exactly one verdict: success.
        #expect(confirmations.map(\.sequenceNumber) == Array(1...100_000))
        #expect(confirmations.allSatisfy { if case .success = $0.result { true } else { false } })
        #expect(try await channel.queueDeclare(queue, passive: true).messageCount == 100_000)
        await connection.close()
    }

    @Test func publishWaitsForTheConfirm() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let queue = try await channel.queueDeclare("", exclusive: true).name
        try await channel.confirmSelect()
        for index in 0..<20 { try await channel.publish("m\(index)", routingKey: queue) }
        // Confirmed means queued: no waiting needed before counting.
        #expect(try await channel.queueDeclare(queue, passive: true).messageCount == 20)
        await connection.close()
    }

    @Test func nacksFailExactlyTheRefusedPublishes() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let queue = try await channel.queueDeclare(
            "", exclusive: true, arguments: ["x-max-length": 5, "x-overflow": "reject-publish"]).name
        try await channel.confirmSelect(window: 100)
        var confirmations: [PublishConfirmation] = []
        for index in 0..<10 {
            confirmations.append(try await channel.publishWithoutWaiting(Array("m\(index)".utf8), routingKey: queue))
        }
        var outcomes: [Bool] = []
        for confirmation in confirmations {
            do {
                try await confirmation.wait()
                outcomes.append(true)
            } catch let error as AMQPError {
                #expect(error.code == .publishNacked)
                outcomes.append(false)
            }
        }
        #expect(outcomes == Array(repeating: true, count: 5) + Array(repeating: false, count: 5))
        let nacked = await #expect(throws: AMQPError.self) { try await channel.publish("one more", routingKey: queue) }
        #expect(nacked?.code == .publishNacked)
        #expect(try await channel.queueDeclare(queue, passive: true).messageCount == 5)
        await connection.close()
    }

    @Test func unroutableMandatoryPublishFailsWithNoRoute() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let queue = try await channel.queueDeclare("", exclusive: true).name
        try await channel.confirmSelect()
        let error = await #expect(throws: AMQPError.self) {
            try await channel.publish("lost", routingKey: TestBroker.uniqueName("nowhere"), mandatory: true)
        }
        #expect(error?.code == .publishReturned)
        #expect(error?.replyCode == 312)
        #expect(error?.replyText == "NO_ROUTE")

        // Interleaved routable and unroutable mandatory publishes: each gets its own verdict.
        var confirmations: [(PublishConfirmation, Bool)] = []
        for index in 0..<40 {
            let routable = index % 3 != 0
            let key = routable ? queue : "nowhere-\(index % 2)"
            confirmations.append(
                (try await channel.publishWithoutWaiting(Array("m\(index)".utf8), routingKey: key, mandatory: true), routable))
        }
        for (confirmation, routable) in confirmations {
            if routable {
                try await confirmation.wait()
            } else {
                let returned = await #expect(throws: AMQPError.self) { try await confirmation.wait() }
                #expect(returned?.replyCode == 312)
            }
        }
        #expect(try await channel.queueDeclare(queue, passive: true).messageCount == 26)
        await connection.close()
    }

    /// On a headers exchange, publishes alike in exchange, routing key, size and message id
    /// route differently by their headers: a return must fail the publish it belongs to.
    @Test func returnFromAHeadersExchangeFailsThePublishItBelongsTo() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let exchange = TestBroker.uniqueName("headers")
        try await channel.exchangeDeclare(exchange, type: .headers, autoDelete: true)
        let queue = try await channel.queueDeclare("", exclusive: true).name
        try await channel.queueBind(queue, exchange: exchange, arguments: ["x-match": "all", "region": "eu"])
        try await channel.confirmSelect()
        var verdicts: [(PublishConfirmation, routable: Bool)] = []
        for index in 0..<20 {
            let routable = index % 2 == 0
            let properties = BasicProperties(headers: ["region": routable ? "eu" : "us"])
            verdicts.append(
                (try await channel.publishWithoutWaiting(
                    Array("same".utf8), exchange: exchange, routingKey: "", mandatory: true, properties: properties),
                 routable))
        }
        var wrong: [Int] = []
        for (index, (confirmation, routable)) in verdicts.enumerated() {
            do {
                try await confirmation.wait()
                if !routable { wrong.append(index) }
            } catch let error as AMQPError where error.code == .publishReturned {
                if routable { wrong.append(index) }
            }
        }
        #expect(wrong.isEmpty, "publishes with the wrong verdict: \(wrong)")
        #expect(try await channel.queueDeclare(queue, passive: true).messageCount == 10)
        try await channel.exchangeDelete(exchange)
        await connection.close()
    }

    @Test func returnsWithoutConfirmModeAppearOnTheChannel() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        try await channel.publish(
            "bounced", routingKey: "nowhere", mandatory: true, properties: .init(messageID: "id-1"))
        var iterator = channel.returnedMessages.makeAsyncIterator()
        let returned = try #require(await iterator.next())
        #expect(returned.replyCode == 312)
        #expect(returned.routingKey == "nowhere")
        #expect(returned.properties.messageID == "id-1")
        #expect(String(decoding: returned.body, as: UTF8.self) == "bounced")
        await connection.close()
    }

    @Test func publishWithoutWaitingNeedsConfirmMode() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let error = await #expect(throws: AMQPError.self) {
            try await channel.publishWithoutWaiting([1], routingKey: "q")
        }
        #expect(error?.code == .invalidArgument)
        #expect(channel.isOpen)
        await connection.close()
    }

    @Test func unconfirmedPublishesFailWhenTheConnectionIsClosedWithoutRecovery() async throws {
        var configuration = try TestBroker.configuration()
        configuration.recovery = .disabled
        let connection = try await AMQPConnection.open(configuration)
        let channel = try await connection.openChannel()
        let queue = try await channel.queueDeclare("", exclusive: true).name
        try await channel.confirmSelect(window: 10_000)
        let publisher = Task { () -> ([PublishConfirmation], (any Error)?) in
            var confirmations: [PublishConfirmation] = []
            do {
                while true {
                    confirmations.append(
                        try await channel.publishWithoutWaiting([UInt8](repeating: 1, count: 1000), routingKey: queue))
                }
            } catch {
                return (confirmations, error)
            }
        }
        try await Task.sleep(for: .milliseconds(300))
        try await TestBroker.forceClose(connectionNamed: configuration.connectionName!, reason: "confirm test")
        let (confirmations, stopped) = await publisher.value
        #expect((stopped as? AMQPError)?.code == .connectionClosed)
        #expect(!confirmations.isEmpty)
        // Publishes handed over just before the close settle when the connection's thread gets
        // to them: wait (bounded) for every verdict.
        let deadline = ContinuousClock.now + .seconds(60)
        while confirmations.contains(where: { $0.result == nil }), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        // Confirmed or failed with the close reason: never left hanging, never a false success.
        for confirmation in confirmations {
            switch confirmation.result {
            case .success: break
            case .failure(let error): #expect(error.replyCode == 320)
            case nil: Issue.record("publish \(confirmation.sequenceNumber) has no verdict")
            }
        }
    }

    @Test func noConfirmIsReportedForAPublishTheBrokerDidNotConfirm() async throws {
        let configuration = try TestBroker.configuration()
        let connection = try await AMQPConnection.open(configuration)
        let channel = try await connection.openChannel()
        let queue = try await channel.queueDeclare("", exclusive: true).name
        try await channel.confirmSelect(window: 100_000)
        var confirmations: [PublishConfirmation] = []
        for _ in 0..<20_000 {
            confirmations.append(try await channel.publishWithoutWaiting([UInt8](repeating: 2, count: 100), routingKey: queue))
        }
        await connection.close()
        // Every publish has exactly one verdict; those not confirmed before the close failed.
        var confirmed = 0
        for confirmation in confirmations {
            switch confirmation.result {
            case .success: confirmed += 1
            case .failure(let error): #expect(error.code == .connectionClosed)
            case nil: Issue.record("publish \(confirmation.sequenceNumber) has no verdict")
            }
        }
        #expect(confirmed <= 20_000)
    }

    /// `confirm.select` held back behind a slow method applies only to what is sent after it:
    /// publishes that go out before it get no confirmation, and every confirm lands on its own
    /// publish.
    @Test func confirmSelectBehindASlowMethodCoversOnlyLaterPublishes() async throws {
        let (configuration, proxy) = try TestBroker.configurationThroughProxy()
        defer { proxy.stop() }
        let connection = try await AMQPConnection.open(configuration)
        let channel = try await connection.openChannel()
        let queue = try await channel.queueDeclare(
            "", exclusive: true, arguments: ["x-max-length": 150, "x-overflow": "reject-publish"]
        ).name
        // The proxy holds every byte: the declare waits for its reply and confirm.select waits
        // behind it, while publishes from another task go out (in order, held by the proxy).
        proxy.stall()
        let slow = Task { try await channel.queueDeclare(queue, passive: true) }
        try await Task.sleep(for: .milliseconds(200))  // arranges the order; asserts nothing
        let selecting = Task { try await channel.confirmSelect(window: 1000) }
        try await Task.sleep(for: .milliseconds(200))
        var early: [PublishConfirmation] = []
        for index in 0..<300 {
            let body = Array("early \(index)".utf8)
            do {
                early.append(try await channel.publishWithoutWaiting(body, routingKey: queue))
            } catch let error as AMQPError where error.code == .invalidArgument {
                try await channel.publish(body, routingKey: queue)  // not in confirm mode yet
            }
        }
        proxy.forward()
        _ = try await slow.value
        try await selecting.value
        // The queue is full now (150 of the early ones): the broker refuses every later one.
        var late: [PublishConfirmation] = []
        for index in 0..<100 {
            late.append(try await channel.publishWithoutWaiting(Array("late \(index)".utf8), routingKey: queue))
        }
        let deadline = ContinuousClock.now + .seconds(60)
        while (early + late).contains(where: { $0.result == nil }), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(early.count == 0, "publishes sent before confirm.select were given confirmations")
        #expect(early.allSatisfy { $0.result != nil } && late.allSatisfy { $0.result != nil }, "unsettled confirmations")
        let lateVerdicts = late.map { confirmation -> String in
            switch confirmation.result {
            case .success: "confirmed"
            case .failure(let error): error.code == .publishNacked ? "nacked" : "\(error)"
            case nil: "none"
            }
        }
        #expect(lateVerdicts == Array(repeating: "nacked", count: 100))
        // Numbered as the broker numbers them: consecutively (early publishes that the
        // connection's thread wrote only after confirm.select count too, unconfirmed).
        let numbers = late.map(\.sequenceNumber)
        #expect(zip(numbers, numbers.dropFirst()).allSatisfy { $1 == $0 + 1 }, "\(numbers)")
        #expect(try await channel.queueDeclare(queue, passive: true).messageCount == 150)
        await connection.close()
    }
}
