import Foundation
import InMemoryTracing
import OrderEvents
import RabbitMQ
import RabbitMQEvents
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing
import Tracing

/// The tracer of this test process, bootstrapped once.
let testTracer: InMemoryTracer = {
    let tracer = InMemoryTracer()
    InstrumentationSystem.bootstrap(tracer)
    return tracer
}()

@Suite(
    "Tracing across the broker",
    .enabled(if: TestBroker.reachableOrRequired, "needs a broker; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"), .watchdog)
struct TracingTests {
    @Test func aTraceSpansPublisherBrokerAndHandler() async throws {
        let tracer = testTracer
        let queue = TestBroker.uniqueName("traced")
        var configuration = EventDispatcher.Configuration(
            queue: queue, exchange: queue + ".exchange", bindings: ["order.*"])
        let (ready, readyContinuation) = AsyncStream.makeStream(of: Void.self)
        configuration.onReady = { readyContinuation.yield() }
        let (handled, handledContinuation) = AsyncStream.makeStream(of: String?.self)
        var handlers = EventHandlers()
        handlers.on(OrderCreated.self) { _, _ in handledContinuation.yield(ServiceContext.current?.inMemorySpanContext?.traceID) }
        let dispatcher = EventDispatcher(
            connection: try TestBroker.configuration(), configuration: configuration, handlers: handlers)
        let connection = try await TestBroker.connect()

        var requestTrace: String?
        var handlerTrace: String??
        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    defer { readyContinuation.finish() }  // a dispatcher that fails ends the wait
                    try await dispatcher.run()
                }
                var readiness = ready.makeAsyncIterator()
                if await readiness.next() == nil {
                    try await group.waitForAll()
                    Issue.record("the dispatcher returned before it was ready")
                    return
                }
                let publisher = try await EventPublisher(connection: connection, exchange: configuration.exchange)
                // An incoming request's span, as a web framework would start it.
                try await withSpan("POST /orders") { span in
                    requestTrace = ServiceContext.current?.inMemorySpanContext?.traceID
                    let item = OrderItem(sku: "SKU-1", quantity: 1, price: 1)
                    try await publisher.publish(OrderCreated(orderID: "o-1", customerID: "c", items: [item]), messageID: "traced-1")
                }
                var handledIterator = handled.makeAsyncIterator()
                handlerTrace = await handledIterator.next()
                trigger.triggerGracefulShutdown()
                try await group.waitForAll()
            }
        }

        let trace = try #require(requestTrace)
        #expect(handlerTrace == .some(trace), "the handler runs inside the publisher's trace")
        let spans = tracer.finishedSpans.filter { $0.spanContext.traceID == trace }
        let producer = try #require(spans.first { $0.kind == .producer })
        let consumer = try #require(spans.first { $0.kind == .consumer })
        #expect(producer.operationName == "order.created publish")
        #expect(consumer.operationName == "OrderCreated process")
        #expect(consumer.spanContext.parentSpanID == producer.spanContext.spanID)

        try await connection.withChannel { channel in
            try await channel.queueDelete(configuration.queue)
            try await channel.queueDelete(configuration.deadLetterQueue)
            try await channel.exchangeDelete(configuration.exchange)
            try await channel.exchangeDelete(configuration.deadLetterExchange)
        }
        await connection.close()
    }
}
