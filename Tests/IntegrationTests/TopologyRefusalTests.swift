import Foundation
import OrderEvents
import RabbitMQ
import RabbitMQEvents
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing

extension EventDispatcherTests {
    /// A node too busy to elect a new quorum queue's Raft leader within RabbitMQ's 5 s refuses
    /// the declaration with 541 `cluster_not_formed` and closes the connection (seen in CI on a
    /// loaded machine). Here the node's Raft metadata store is suspended, which makes the same
    /// refusal certain; the dispatcher warns, tries again, and consumes once the node recovers.
    /// On a broker of the test's own: the suspension stalls every quorum queue of the node.
    @Test func aTopologyTheBrokerFailedToDeclareIsDeclaredAgain() async throws {
        try await ThrowawayBroker.with("notformed") { broker in
            var connection = try AMQPConnection.Configuration(url: broker.url)
            connection.connectionName = TestBroker.uniqueName("dispatcher")
            let configuration = configuration()
            let logs = CapturedLogs.Storage()
            let recorder = Recorder()
            var handlers = EventHandlers()
            handlers.on(OrderCreated.self) { _, context in await recorder.record("created", context) }
            let dispatcher = EventDispatcher(
                connection: connection, configuration: configuration, handlers: handlers, logger: CapturedLogs.logger(logs))
            let isRetryWarning = { (record: CapturedLogs.Record) in record.message.contains("trying again") }

            try await broker.ctl(["eval", "sys:suspend(ra_log_meta)."])
            try await testGracefulShutdown { trigger in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await dispatcher.run() }
                    Watchdog.note("waiting for the refusal")
                    let refused = try await waitUntil({ logs.all.contains(where: isRetryWarning) }, within: .seconds(90))
                    #expect(refused)
                    #expect(!dispatcher.isConsuming, "nothing consumes while the node cannot declare the queue")
                    try await broker.ctl(["eval", "sys:resume(ra_log_meta)."])
                    Watchdog.note("waiting for the dispatcher to consume")
                    #expect(try await waitUntil({ dispatcher.isConsuming }, within: .seconds(90)))

                    let publishing = try await AMQPConnection.open(connection)
                    let publisher = try await EventPublisher(connection: publishing, exchange: configuration.exchange)
                    try await publisher.publish(OrderCreated(orderID: "o-1", customerID: "c", items: []))
                    Watchdog.note("waiting for the event")
                    #expect(try await waitUntil({ await recorder.count == 1 }))
                    await publishing.close()
                    trigger.triggerGracefulShutdown()
                    try await group.waitForAll()
                }
            }
            let warning = try #require(logs.all.first(where: isRetryWarning))
            #expect(warning.level == .warning)
            #expect(warning.metadata["error"].map { "\($0)" }?.contains("cluster_not_formed") == true)
        }
    }
}
