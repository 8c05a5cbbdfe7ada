import Logging
import RabbitMQ
import Tracing

extension EventDispatcher {
    /// A handler ran longer than ``Configuration/handlerTimeout``: it was cancelled, and the
    /// attempt counts as failed.
    public struct HandlerTimedOut: Error, CustomStringConvertible {
        /// The limit it exceeded.
        public var timeout: Duration

        public var description: String { "the handler ran longer than \(timeout)" }
    }

    /// Handles one delivery until it is settled: acknowledged after the handler succeeded, dead-
    /// lettered after the last failed attempt (or at once for poison), or, when a shutdown
    /// begins during a retry's wait, left for the channel's close to give back.
    func handle(_ delivery: AMQPDelivery, publishing: AMQPChannel, books: DispatchBooks) async {
        let headers = delivery.properties.headers ?? [:]
        let routingKey = delivery.routingKey
        let type = delivery.properties.type
        guard let entry = handlers.entry(type: type, routingKey: routingKey) else {
            let what = type.map { "type '\($0)'" } ?? "routing key '\(routingKey)'"
            switch configuration.unknownTypes {
            case .deadLetter:
                await deadLetter(delivery, reason: "unknown-type", error: "no handler for \(what)", attempts: 1, publishing)
            case .acknowledge:
                logger.debug("no handler; acknowledged", metadata: ["event": .string(what)])
                await acknowledge(delivery)
            }
            return
        }
        let event: any Sendable
        do {
            event = try entry.decode(configuration.codec, delivery.body)
        } catch {
            await deadLetter(delivery, reason: "undecodable", error: "\(error)", attempts: 1, publishing)
            return
        }
        // Deliveries made before without an acknowledgement (a crash, a lost connection) count
        // as attempts: quorum queues count them in `x-delivery-count`. Clamped: anyone may have
        // written the header.
        let redeliveries = min(max(headers["x-delivery-count"]?.int64Value ?? 0, 0), Int64(Int32.max))
        var context = EventContext(
            messageID: delivery.properties.messageID, eventType: type, routingKey: routingKey,
            redelivered: delivery.redelivered, attempt: Int(redeliveries) + 1,
            consumerGroup: configuration.consumerGroup, partitionKey: headers[EventHeader.partitionKey]?.stringValue,
            headers: headers, properties: delivery.properties)
        var waited = Duration.zero
        while true {
            do {
                try await run(entry, event, context)
                await acknowledge(delivery)
                return
            } catch {
                let delay = configuration.retry.delay(
                    afterFailedAttempt: context.attempt, waitedSoFar: waited, random: Double.random(in: 0..<1))
                guard let delay else {
                    await deadLetter(
                        delivery, reason: "retries-exhausted", error: "\(error)", attempts: context.attempt, publishing)
                    return
                }
                logger.debug(
                    "handler failed; retrying",
                    metadata: ["attempt": "\(context.attempt)", "delay": "\(delay)", "error": "\(error)"])
                guard await wait(delay, unlessStopping: books) else {
                    logger.debug("shutting down: retry given back", metadata: ["attempt": "\(context.attempt)"])
                    return
                }
                waited += delay
                context.attempt += 1
            }
        }
    }

    /// Runs the handler, inside a span when a tracer is bootstrapped, within the timeout.
    private func run(_ entry: EventHandlers.Entry, _ event: any Sendable, _ context: EventContext) async throws {
        let started = ContinuousClock.now
        defer { handlerDuration.record(duration: started.duration(to: .now)) }
        let instrument = InstrumentationSystem.instrument
        if instrument is NoOpInstrument {
            // Nothing bootstrapped (the default): no trace to continue, no span to start.
            try await withTimeout { try await entry.handle(event, context) }
        } else {
            // The handler's span continues the publisher's trace, from the message headers.
            var trace = ServiceContext.topLevel
            instrument.extract(context.headers, into: &trace, using: TraceContextExtractor())
            let name = "\(context.eventType ?? context.routingKey) process"
            try await withSpan(name, context: trace, ofKind: .consumer) { span in
                span.attributes["messaging.system"] = "rabbitmq"
                span.attributes["messaging.message.id"] = context.messageID
                try await withTimeout { try await entry.handle(event, context) }
            }
        }
    }

    /// Runs `body`, cancelling it after ``Configuration/handlerTimeout`` (if set).
    private func withTimeout(_ body: @escaping @Sendable () async throws -> Void) async throws {
        guard let timeout = configuration.handlerTimeout else { return try await body() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw HandlerTimedOut(timeout: timeout)
            }
            // The first to end decides; the other is cancelled (and awaited: a handler that
            // ignores cancellation delays the next attempt, never overlaps it).
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    /// Waits `delay` before a retry; `false` as soon as the dispatcher stops (a shutdown), so the
    /// delivery goes back to the queue instead of holding the shutdown up.
    private func wait(_ delay: Duration, unlessStopping books: DispatchBooks) async -> Bool {
        let end = ContinuousClock.now + delay
        while ContinuousClock.now < end {
            if books.isStopping || Task.isCancelled { return false }
            // Slices, so a shutdown is noticed within one.
            try? await Task.sleep(for: min(.milliseconds(100), ContinuousClock.now.duration(to: end)))
        }
        return !books.isStopping && !Task.isCancelled
    }

    private func acknowledge(_ delivery: AMQPDelivery) async {
        do {
            try await delivery.ack()
        } catch {
            // The channel closed: the broker redelivers it, and the handler runs again.
            logger.debug("could not acknowledge", metadata: ["error": "\(error)"])
        }
    }

    /// Publishes the message to the dead-letter exchange with the reason, waits for the
    /// confirm, then acknowledges the original. If that fails, the original goes back to the
    /// queue instead (`basic.reject`, a failed attempt): never dropped.
    private func deadLetter(
        _ delivery: AMQPDelivery, reason: String, error: String, attempts: Int, _ channel: AMQPChannel
    ) async {
        var properties = delivery.properties
        var headers = properties.headers ?? [:]
        headers[DeadLetterHeader.reason] = .string(reason)
        headers[DeadLetterHeader.error] = .string(String(error.prefix(1000)))
        headers[DeadLetterHeader.attempts] = .int64(Int64(attempts))
        headers[DeadLetterHeader.queue] = .string(configuration.queue)
        headers[DeadLetterHeader.exchange] = .string(delivery.exchange)
        headers[DeadLetterHeader.routingKey] = .string(delivery.routingKey)
        // The broker's count of this life of the event: sent back once fixed, it starts again.
        headers["x-delivery-count"] = nil
        properties.headers = headers
        logger.debug("dead-lettering", metadata: ["reason": .string(reason), "error": .string(error)])
        do {
            try await channel.publish(
                delivery.body, exchange: configuration.deadLetterExchange, routingKey: delivery.routingKey,
                properties: properties)
            try await delivery.ack()
        } catch {
            logger.debug("could not dead-letter; rejected", metadata: ["error": "\(error)"])
            try? await delivery.reject(requeue: true)
        }
    }
}
