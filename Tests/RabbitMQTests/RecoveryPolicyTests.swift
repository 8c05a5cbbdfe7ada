import Testing

@testable import RabbitMQ

@Suite("Recovery policy and the topology record")
struct RecoveryPolicyTests {
    @Test func backoffDoublesUpToTheMaximum() {
        let recovery = AMQPConnection.Configuration.Recovery()
        let delays = (1...8).map { recovery.delay(forAttempt: $0) }
        #expect(
            delays == [
                .milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800), .milliseconds(1600),
                .seconds(2), .seconds(2), .seconds(2),
            ])
        for attempt in 1...8 {
            let jittered = recovery.jitteredDelay(forAttempt: attempt)
            let base = recovery.delay(forAttempt: attempt)
            #expect(jittered >= base * 0.8 && jittered <= base * 1.2)
        }
    }

    @Test func endpointsListTheMainOneFirst() throws {
        var configuration = try AMQPConnection.Configuration(url: "amqp://a:5672")
        configuration.alternateEndpoints = [.init(host: "b", port: 5673), .init(host: "::1", port: 5674)]
        #expect(configuration.endpoints.map(\.description) == ["a:5672", "b:5673", "[::1]:5674"])
    }

    @Test func deletesTakeTheirBindingsWithThem() {
        let record = TopologyRecord()
        record.apply(.exchangeDeclared(exchange("orders")))
        record.apply(.exchangeDeclared(exchange("audit")))
        record.apply(.queueDeclared(queue("inventory")))
        record.apply(.queueBound(binding("inventory", "orders", "order.*")))
        record.apply(.queueBound(binding("inventory", "orders", "order.*")))  // once only
        record.apply(.queueBound(binding("inventory", "audit", "#")))
        record.apply(.exchangeBound(binding("audit", "orders", "#")))
        #expect(record.queueBindings.count == 2)

        record.apply(.exchangeDeleted("orders"))
        #expect(record.exchanges.map(\.name) == ["audit"])
        #expect(record.queueBindings == [binding("inventory", "audit", "#")])
        #expect(record.exchangeBindings.isEmpty)

        record.apply(.queueDeleted("inventory"))
        #expect(record.queues.isEmpty && record.queueBindings.isEmpty)
        record.apply(.exchangeDeleted("audit"))
        #expect(record.isEmpty)
    }

    @Test func predefinedExchangesAreNotRecorded() {
        let record = TopologyRecord()
        record.apply(.exchangeDeclared(exchange("amq.topic")))
        record.apply(.exchangeDeclared(exchange("")))
        #expect(record.isEmpty)
    }

    @Test func serverNamedQueuesTakeTheBrokersNameAndCanBeRenamed() {
        let record = TopologyRecord()
        let serverNamed = RecordedQueue(
            name: "", isServerNamed: true, durable: false, exclusive: true, autoDelete: true, arguments: [:])
        record.apply(
            .queueDeclared(serverNamed),
            reply: .queueDeclareOk(.init(name: "amq.gen-1", messageCount: 0, consumerCount: 0)))
        record.apply(.queueBound(binding("amq.gen-1", "orders", "#")))
        #expect(record.queues.map(\.name) == ["amq.gen-1"])

        record.renameQueue(from: "amq.gen-1", to: "amq.gen-2")
        #expect(record.queues.map(\.name) == ["amq.gen-2"])
        #expect(record.queueBindings.map(\.destination) == ["amq.gen-2"])
    }

    @Test func unbindRemovesOnlyTheMatchingBinding() {
        let record = TopologyRecord()
        record.apply(.queueBound(binding("q", "x", "a")))
        record.apply(.queueBound(binding("q", "x", "b")))
        record.apply(.queueUnbound(binding("q", "x", "a")))
        #expect(record.queueBindings == [binding("q", "x", "b")])
    }

    private func exchange(_ name: String) -> RecordedExchange {
        RecordedExchange(name: name, type: "topic", durable: true, autoDelete: false, internal: false, arguments: [:])
    }

    private func queue(_ name: String) -> RecordedQueue {
        RecordedQueue(name: name, isServerNamed: false, durable: true, exclusive: false, autoDelete: false, arguments: [:])
    }

    private func binding(_ destination: String, _ source: String, _ key: String) -> RecordedBinding {
        RecordedBinding(destination: destination, source: source, routingKey: key, arguments: [:])
    }
}
