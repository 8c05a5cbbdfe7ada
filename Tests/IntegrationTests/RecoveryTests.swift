import Foundation
import Logging
import Metrics
import MetricsTestKit
import RabbitMQ
import Testing


/// Automatic recovery under faults: each scenario counts messages sent, confirmed, consumed,
/// lost and duplicated, and prints the figures (`FIGURES` lines) for the README.
@Suite(
    "Automatic recovery against a real broker",
    .enabled(if: TestBroker.reachableOrRequired, "needs a broker; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"), .watchdog)
struct RecoveryTests {
    @Test func brokerKilledAndRestartedDuringConfirmedPublishLosesNothing() async throws {
        try await ThrowawayBroker.with("kill") { broker in
            let ledger = MessageLedger()
            let queue = TestBroker.uniqueName("killed")
            let publisher = try await AMQPConnection.open(TestBroker.configuration(url: broker.url, "publisher"))
            let consumer = try await AMQPConnection.open(TestBroker.configuration(url: broker.url, "consumer"))
            let publisherEvents = EventLog(publisher)
            let consumerEvents = EventLog(consumer)
            _ = try await publisher.withChannel { try await $0.queueDeclare(queue, durable: true) }
            let consuming = FaultLoad.consume(queue, on: consumer, ledger: ledger)

            let total = 50_000
            let crash = Task {
                // Wait until the publish is well under way, then crash the node and start it again.
                try await ledger.waitUntilHandedOver(15_000)
                try await broker.kill()
                let handedOverAtCrash = ledger.handedOverCount
                try await Task.sleep(for: .seconds(1))
                let reviving = Task { try await broker.revive() }
                // The instant the node listens again, to the nearest 10 ms.
                while !TCPProbe.canConnect(host: "127.0.0.1", port: broker.port) {
                    try await Task.sleep(for: .milliseconds(10))
                }
                let back = ContinuousClock.now
                ledger.mark(back)
                try await reviving.value
                return (back, handedOverAtCrash)
            }
            // Paced (at most 10,000 a second) so the crash lands in the middle of the publish even
            // on a loaded machine.
            try await FaultLoad.publish(total, to: queue, on: publisher, ledger: ledger, pause: .milliseconds(10))
            let (brokerBack, handedOverAtCrash) = try await crash.value
            try await ledger.waitUntilConfirmedConsumed(within: .seconds(120))
            consuming.cancel()

            let recoveryTime = ledger.firstDeliveryAfterMarkTime.map { brokerBack.duration(to: $0) }
            print("FIGURES " + ledger.summary("kill -9 and restart", sent: total)
                + "; crashed after \(handedOverAtCrash) handed over; broker back to first delivery \(recoveryTime.map { "\($0)" } ?? "n/a")")
            #expect(handedOverAtCrash < total - 10_000, "the crash came during the publish")
            #expect(ledger.lost.isEmpty, "confirmed but never consumed: \(ledger.lost.prefix(20))")
            #expect(ledger.unflaggedDuplicates.isEmpty, "duplicates not flagged as redelivered")
            #expect(ledger.confirmedCount + ledger.failedCount == total, "every publish has a verdict")
            #expect(ledger.confirmedCount > 0)
            #expect(publisherEvents.count(EventLog.isRecovered) >= 1)
            #expect(consumerEvents.count(EventLog.isRecovered) >= 1)
            await publisher.close()
            await consumer.close()
        }
    }

    @Test func repeatedForcedClosesUnderLoadLoseNothing() async throws {
        let ledger = MessageLedger()
        let queue = TestBroker.uniqueName("forced")
        let publisherConfiguration = try TestBroker.configuration("publisher")
        let consumerConfiguration = try TestBroker.configuration("consumer")
        let publisher = try await AMQPConnection.open(publisherConfiguration)
        let consumer = try await AMQPConnection.open(consumerConfiguration)
        let publisherEvents = EventLog(publisher)
        let consumerEvents = EventLog(consumer)
        try await TestBroker.declareQuorumQueue(queue)
        _ = try await publisher.withChannel {
            try await $0.queueDeclare(queue, durable: true, arguments: ["x-queue-type": "quorum"])
        }
        let consuming = FaultLoad.consume(queue, on: consumer, ledger: ledger)

        let total = 30_000
        let closes = 3
        let operator_ = Task {
            for round in 1...closes {
                for (name, events) in [
                    (publisherConfiguration.connectionName!, publisherEvents),
                    (consumerConfiguration.connectionName!, consumerEvents),
                ] {
                    // While the publisher is mid-way: closes at 4,000, 8,000, ... messages.
                    try await ledger.waitUntilHandedOver(4_000 * (2 * round - 1) + (events === consumerEvents ? 4_000 : 0))
                    try await TestBroker.forceClose(connectionNamed: name, reason: "fault test \(round)")
                    // The next close needs the connection back.
                    try await events.waitFor(round, within: .seconds(30), EventLog.isRecovered)
                }
            }
        }
        // rabbitmqctl takes a second or two per call: the publish is stretched to outlast them.
        try await FaultLoad.publish(total, to: queue, on: publisher, ledger: ledger, pause: .milliseconds(50))
        try await operator_.value
        try await ledger.waitUntilConfirmedConsumed(within: .seconds(60))
        consuming.cancel()

        print("FIGURES " + ledger.summary("close_connection x\(closes) each side", sent: total))
        #expect(ledger.lost.isEmpty, "confirmed but never consumed: \(ledger.lost.prefix(20))")
        #expect(ledger.unflaggedDuplicates.isEmpty)
        #expect(ledger.confirmedCount + ledger.failedCount == total)
        #expect(publisherEvents.count(EventLog.isRecovered) == closes)
        #expect(consumerEvents.count(EventLog.isRecovered) == closes)
        try await publisher.withChannel { _ = try await $0.queueDelete(queue) }
        await publisher.close()
        await consumer.close()
    }

    @Test func republishingUnconfirmedMessagesConfirmsEveryOne() async throws {
        let ledger = MessageLedger()
        let queue = TestBroker.uniqueName("republish")
        var publisherConfiguration = try TestBroker.configuration("publisher")
        publisherConfiguration.recovery.republishUnconfirmed = true
        let publisher = try await AMQPConnection.open(publisherConfiguration)
        let consumer = try await AMQPConnection.open(TestBroker.configuration("consumer"))
        let events = EventLog(publisher)
        _ = try await publisher.withChannel { try await $0.queueDeclare(queue, durable: true) }
        let consuming = FaultLoad.consume(queue, on: consumer, ledger: ledger)

        let total = 20_000
        let operator_ = Task {
            for round in 1...2 {
                try await ledger.waitUntilHandedOver(round * 6_000)
                try await TestBroker.forceClose(connectionNamed: publisherConfiguration.connectionName!, reason: "republish \(round)")
                try await events.waitFor(round, within: .seconds(30), EventLog.isRecovered)
            }
        }
        try await FaultLoad.publish(total, to: queue, on: publisher, ledger: ledger, pause: .milliseconds(50))
        try await operator_.value
        try await ledger.waitUntilConfirmedConsumed(within: .seconds(60))
        consuming.cancel()

        print("FIGURES " + ledger.summary("close_connection x2 with republishing", sent: total))
        // Nothing fails: what was unconfirmed at each close was sent again and confirmed.
        #expect(ledger.failedCount == 0)
        #expect(ledger.confirmedCount == total)
        #expect(ledger.lost.isEmpty)
        try await publisher.withChannel { _ = try await $0.queueDelete(queue) }
        await publisher.close()
        await consumer.close()
    }

    @Test func stalledSocketIsDetectedByHeartbeatsAndRecovered() async throws {
        let (configuration, proxy) = try TestBroker.configurationThroughProxy(heartbeat: 1)
        defer { proxy.stop() }
        let connection = try await AMQPConnection.open(configuration)
        let events = EventLog(connection)
        let channel = try await connection.openChannel()
        let queue = try await channel.queueDeclare("", exclusive: true).name
        let consumer = try await channel.consume(queue: queue)

        proxy.stall()
        let stalled = ContinuousClock.now
        #expect(try await events.waitFor(within: .seconds(20), EventLog.isDisconnected))
        let detection = stalled.duration(to: .now)
        guard case .disconnected(let reason)? = events.all.first(where: EventLog.isDisconnected) else { return }
        #expect(reason.code == .heartbeatMissed)
        proxy.forward()
        #expect(try await events.waitFor(within: .seconds(30), EventLog.isRecovered))
        print("FIGURES stall: missed heartbeats (1 s interval) detected \(detection) after the stall")

        // The exclusive server-named queue was declared again (under a new name, since the
        // broker deleted the old one with the old connection), and the consumer follows it.
        let renamed = events.all.compactMap { event -> String? in
            if case .queueRenamed(let old, let new) = event, old == queue { return new }
            return nil
        }
        #expect(renamed.count == 1)
        let newQueue = renamed.first ?? queue
        try await channel.publish("after the stall", routingKey: newQueue)
        var iterator = consumer.makeAsyncIterator()
        let delivery = try await iterator.next()
        #expect(delivery?.bodyString == "after the stall")
        await connection.close()
    }

    @Test func connectionCutWhileRecoveringStillRecovers() async throws {
        let (configuration, proxy) = try TestBroker.configurationThroughProxy()
        defer { proxy.stop() }
        let connection = try await AMQPConnection.open(configuration)
        let events = EventLog(connection)
        let channel = try await connection.openChannel()
        // Enough topology that re-creating it takes many frames.
        let prefix = TestBroker.uniqueName("cut")
        let queues = (0..<60).map { "\(prefix)-\($0)" }
        for queue in queues {
            try await channel.queueDeclare(queue, durable: true, arguments: ["x-expires": 120_000])
            try await channel.queueBind(queue, exchange: "amq.topic", routingKey: queue)
        }
        let consumer = try await channel.consume(queue: queues[59])

        // The reconnect's login takes well under 1,500 bytes from the broker; the replies to
        // the re-declares take the rest: the cut lands in the middle of the recovery.
        proxy.cutNextConnection(afterBrokerBytes: 1500)
        proxy.cut()
        #expect(try await events.waitFor(within: .seconds(20), EventLog.isDisconnected))
        proxy.forward()
        #expect(try await events.waitFor(within: .seconds(60), EventLog.isRecovered))
        let interrupted = events.count {
            if case .recoveryAttemptFailed = $0 { true } else { false }
        }
        #expect(interrupted >= 1, "the first reconnect was cut during recovery: \(events.all)")
        #expect(proxy.acceptedConnections >= 3)

        // The bindings and the consumer are back.
        try await channel.publish("routed", exchange: "amq.topic", routingKey: queues[59])
        var iterator = consumer.makeAsyncIterator()
        #expect(try await iterator.next()?.bodyString == "routed")
        for queue in queues { try await channel.queueDelete(queue) }
        await connection.close()
    }

    /// A second loss while the channels are being opened again must not drop the ones in the
    /// middle of reopening: the next attempt opens every channel, and each one works.
    @Test func lossWhileChannelsAreReopenedKeepsEveryChannel() async throws {
        let (configuration, proxy) = try TestBroker.configurationThroughProxy()
        defer { proxy.stop() }
        let connection = try await AMQPConnection.open(configuration)
        let events = EventLog(connection)
        var channels: [AMQPChannel] = []
        for _ in 0..<150 { channels.append(try await connection.openChannel()) }
        let queue = try await channels[149].queueDeclare(TestBroker.uniqueName("reopen"), durable: true).name
        let consumer = try await channels[149].consume(queue: queue)

        // The login takes well under 1,500 bytes from the broker, each channel.open-ok 16: the
        // cut lands while the channels are being opened again.
        proxy.cutNextConnection(afterBrokerBytes: 1500)
        proxy.cut()
        #expect(try await events.waitFor(within: .seconds(20), EventLog.isDisconnected))
        proxy.forward()
        #expect(try await events.waitFor(within: .seconds(60), EventLog.isRecovered))
        #expect(events.count { if case .recoveryAttemptFailed = $0 { true } else { false } } >= 1)

        var closed: [UInt16] = []
        for channel in channels {
            do {
                try await channel.exchangeDeclare("amq.topic", type: .topic, passive: true)
            } catch {
                closed.append(channel.number)
            }
        }
        #expect(closed.isEmpty, "channels lost by the recovery: \(closed)")
        // The last channel's consumer is back too.
        try await channels[0].publish("after", routingKey: queue)
        var iterator = consumer.makeAsyncIterator()
        #expect(try await iterator.next()?.bodyString == "after")
        try await channels[0].queueDelete(queue)
        await connection.close()
    }

    /// A reconnect attempt that hangs in the handshake (the peer accepts and says nothing) runs
    /// off the connection's thread: closing the connection meanwhile returns at once rather
    /// than after the attempt's timeout, and tasks on the connection's thread keep running.
    @Test func aHangingReconnectDoesNotHoldTheConnectionsThread() async throws {
        var (configuration, proxy) = try TestBroker.configurationThroughProxy(heartbeat: 1)
        defer { proxy.stop() }
        configuration.connectionTimeout = .seconds(60)
        let connection = try await AMQPConnection.open(configuration)
        let events = EventLog(connection)
        proxy.stall()  // missed heartbeats, then every reconnect hangs in the handshake
        #expect(try await events.waitFor(within: .seconds(30)) { if case .recovering = $0 { true } else { false } })
        try await Task.sleep(for: .milliseconds(200))  // the attempt is under way; asserts nothing

        let ticked = CancellationTests.Outcome()
        Task(executorPreference: connection.taskExecutor) {
            try? await Task.sleep(for: .milliseconds(10))
            ticked.finish(.success(()))
        }
        // The bound is the feature: a fifth of the attempt's 60 s timeout.
        #expect(try await ticked.wait(within: .seconds(12)) != nil, "the connection's thread was held by the attempt")
        let closed = CancellationTests.Outcome()
        Task {
            await connection.close()
            closed.finish(.success(()))
        }
        #expect(try await closed.wait(within: .seconds(12)) != nil, "close() waited for the hanging reconnect attempt")
        #expect(connection.closeReason?.code == .connectionClosed)
    }

    /// An auto-delete queue goes with its last consumer, whether that consumer was cancelled,
    /// its channel closed, or the broker cancelled it: recovery must not declare it again.
    @Test func autoDeleteQueuesGoneWithTheirConsumersStayGone() async throws {
        let configuration = try TestBroker.configuration()
        let connection = try await AMQPConnection.open(configuration)
        let events = EventLog(connection)
        let setup = try await connection.openChannel()
        let byClose = TestBroker.uniqueName("auto-close")
        let byBroker = TestBroker.uniqueName("auto-broker")
        let kept = TestBroker.uniqueName("auto-kept")
        for queue in [byClose, byBroker, kept] { try await setup.queueDeclare(queue, durable: true, autoDelete: true) }
        let closing = try await connection.openChannel()
        _ = try await closing.consume(queue: byClose)
        let cancelled = try await connection.openChannel()
        let cancelledConsumer = try await cancelled.consume(queue: byBroker)
        let keeping = try await connection.openChannel()
        let keptConsumer = try await keeping.consume(queue: kept)

        await closing.close()  // the broker deletes byClose with its only consumer
        // Another connection deletes byBroker: the broker cancels its consumer.
        try await TestBroker.connect().withChannel { _ = try await $0.queueDelete(byBroker) }
        var iterator = cancelledConsumer.makeAsyncIterator()
        await #expect(throws: AMQPError.self) { _ = try await iterator.next() }

        try await TestBroker.forceClose(connectionNamed: configuration.connectionName!, reason: "auto-delete test")
        #expect(try await events.waitFor(within: .seconds(30), EventLog.isRecovered))
        let check = try await TestBroker.connect()
        for queue in [byClose, byBroker] {
            let error = await #expect(throws: AMQPError.self, "\(queue) was declared again") {
                try await check.withChannel { _ = try await $0.queueDeclare(queue, passive: true) }
            }
            #expect(error?.code == .notFound)
        }
        // The queue whose consumer lives on is back, with its consumer.
        #expect(try await check.withChannel { try await $0.queueDeclare(kept, passive: true).consumerCount } == 1)
        withExtendedLifetime(keptConsumer) {}
        await check.close()
        await connection.close()
    }

    /// Per-consumer prefetch applies to the consumers started after it: each consumer comes
    /// back with the prefetch it was started with, not the channel's last one.
    @Test func eachConsumerKeepsItsOwnPrefetchAcrossARecovery() async throws {
        let configuration = try TestBroker.configuration()
        let connection = try await AMQPConnection.open(configuration)
        let events = EventLog(connection)
        let channel = try await connection.openChannel()
        let small = try await channel.queueDeclare(TestBroker.uniqueName("prefetch-3"), durable: true).name
        let large = try await channel.queueDeclare(TestBroker.uniqueName("prefetch-7"), durable: true).name
        for index in 0..<20 {
            try await channel.publish("s\(index)", routingKey: small)
            try await channel.publish("l\(index)", routingKey: large)
        }
        let consuming = try await connection.openChannel()
        try await consuming.basicQos(prefetchCount: 3)
        let first = try await consuming.consume(queue: small)  // never acknowledges
        try await consuming.basicQos(prefetchCount: 7)
        let second = try await consuming.consume(queue: large)
        #expect(try await TestBroker.waitForMessageCount(17, in: small, on: channel))
        #expect(try await TestBroker.waitForMessageCount(13, in: large, on: channel))

        try await TestBroker.forceClose(connectionNamed: configuration.connectionName!, reason: "prefetch test")
        #expect(try await events.waitFor(within: .seconds(30), EventLog.isRecovered))
        #expect(try await TestBroker.waitForMessageCount(17, in: small, on: channel), "the first consumer holds 3 again")
        #expect(try await TestBroker.waitForMessageCount(13, in: large, on: channel), "the second holds 7")
        // And the channel's setting for consumers started later is still 7.
        let third = try await consuming.consume(queue: small)
        #expect(try await TestBroker.waitForMessageCount(10, in: small, on: channel))
        withExtendedLifetime((first, second, third)) {}
        try await channel.queueDelete(small)
        try await channel.queueDelete(large)
        await connection.close()
    }

    /// A peer that stops reading while the client publishes: librabbitmq's write then waits
    /// for room in the socket without a deadline. The heartbeat watchdog bounds it: the
    /// connection is declared lost, and the thread is free again (close() returns).
    @Test func aWriteThatCannotProgressIsBoundedByTheHeartbeatWatchdog() async throws {
        let (configuration, proxy) = try TestBroker.configurationThroughProxy(heartbeat: 1)
        defer { proxy.stop() }
        let connection = try await AMQPConnection.open(configuration)
        let events = EventLog(connection)
        let channel = try await connection.openChannel()
        let queue = try await channel.queueDeclare("", exclusive: true).name
        proxy.stall()
        let body = [UInt8](repeating: 1, count: 100_000)
        let publishing = Task {
            // Until the socket's buffers are full and a write blocks (about 100 MiB are queued).
            for _ in 0..<2_000 { try await channel.publish(body, routingKey: queue) }
        }
        #expect(
            try await events.waitFor(within: .seconds(60), EventLog.isDisconnected),
            "the connection was never declared lost: its thread is stuck in a write")
        if case .disconnected(let reason)? = events.all.first(where: EventLog.isDisconnected) {
            #expect(reason.code == .heartbeatMissed, "\(reason)")
        }
        let closed = CancellationTests.Outcome()
        Task {
            await connection.close()
            closed.finish(.success(()))
        }
        #expect(try await closed.wait(within: .seconds(60)) != nil, "close() did not return")
        publishing.cancel()
        _ = await publishing.result
    }

    /// The broker keeps the lost connection's exclusive queue until it notices that connection
    /// is gone (its heartbeats time out): recovery declares the queue again once it is free,
    /// rather than failing it and having the consumer's channel closed (405, then 403).
    @Test func exclusiveQueueIsRecoveredOnceTheBrokerLetsTheOldConnectionGo() async throws {
        let (configuration, proxy) = try TestBroker.configurationThroughProxy(heartbeat: 2)
        defer { proxy.stop() }
        let connection = try await AMQPConnection.open(configuration)
        let events = EventLog(connection)
        let channel = try await connection.openChannel()
        let queue = try await channel.queueDeclare(TestBroker.uniqueName("exclusive"), exclusive: true).name
        let consumer = try await channel.consume(queue: queue)

        proxy.dropClientsKeepingBrokerSide()
        #expect(try await events.waitFor(within: .seconds(60), EventLog.isRecovered))
        let refused = events.all.compactMap { event -> AMQPError? in
            if case .topologyRecoveryFailed(let error) = event { error } else { nil }
        }
        #expect(refused.isEmpty, "\(refused)")
        #expect(channel.isOpen, "\(String(describing: channel.closeReason))")
        try await channel.publish("after", routingKey: queue)
        var iterator = consumer.makeAsyncIterator()
        #expect(try await iterator.next()?.bodyString == "after")
        await connection.close()
    }

    /// A stream consumer resumes after the last offset it received, not from the offset it was
    /// started with: nothing is replayed, nothing published meanwhile is skipped.
    @Test func streamConsumerResumesAfterTheLastOffsetItReceived() async throws {
        let configuration = try TestBroker.configuration()
        let connection = try await AMQPConnection.open(configuration)
        let events = EventLog(connection)
        let channel = try await connection.openChannel()
        let stream = try await channel.queueDeclare(
            TestBroker.uniqueName("stream"), durable: true, arguments: ["x-queue-type": "stream"]
        ).name
        for index in 0..<10 { try await channel.publish("before \(index)", routingKey: stream) }
        let consuming = try await connection.openChannel()
        try await consuming.basicQos(prefetchCount: 100)  // streams need a prefetch
        let consumer = try await consuming.consume(queue: stream, arguments: ["x-stream-offset": "first"])
        var iterator = consumer.makeAsyncIterator()
        for index in 0..<10 {
            let delivery = try #require(try await iterator.next())
            #expect(delivery.bodyString == "before \(index)")
            try await delivery.ack()
        }

        try await TestBroker.forceClose(connectionNamed: configuration.connectionName!, reason: "stream test")
        #expect(try await events.waitFor(within: .seconds(30), EventLog.isRecovered))
        for index in 0..<5 { try await channel.publish("after \(index)", routingKey: stream) }
        var bodies: [String] = []
        for _ in 0..<5 {
            let delivery = try #require(try await iterator.next())
            bodies.append(delivery.bodyString)
            try await delivery.ack()
        }
        #expect(bodies == (0..<5).map { "after \($0)" }, "replayed from the start instead of resuming")
        try await channel.queueDelete(stream)
        await connection.close()
    }

    @Test func recoveryGivesUpAfterItsAttemptsAndSaysWhy() async throws {
        var (configuration, proxy) = try TestBroker.configurationThroughProxy()
        defer { proxy.stop() }
        configuration.recovery.maximumAttempts = 3
        let connection = try await AMQPConnection.open(configuration)
        let events = EventLog(connection)
        let channel = try await connection.openChannel()
        proxy.cut()  // and every reconnect is cut at once
        let closed = try await events.waitFor(within: .seconds(30)) {
            if case .closed = $0 { true } else { false }
        }
        #expect(closed)
        #expect(events.count { if case .recovering = $0 { true } else { false } } == 3)
        #expect(connection.closeReason?.code == .recoveryFailed)
        #expect(!connection.isOpen && !connection.isRecovering)
        let later = await #expect(throws: AMQPError.self) { try await channel.queueDeclare("", exclusive: true) }
        #expect(later?.code == .recoveryFailed)
    }

    @Test func deliveryFromBeforeARecoveryCannotBeAcknowledged() async throws {
        let configuration = try TestBroker.configuration()
        let connection = try await AMQPConnection.open(configuration)
        let events = EventLog(connection)
        let channel = try await connection.openChannel()
        let queue = try await channel.queueDeclare(TestBroker.uniqueName("stale"), durable: true).name
        try await channel.publish("once", routingKey: queue)
        let consumer = try await channel.consume(queue: queue)
        var iterator = consumer.makeAsyncIterator()
        let first = try #require(try await iterator.next())
        #expect(!first.redelivered)

        try await TestBroker.forceClose(connectionNamed: configuration.connectionName!, reason: "stale test")
        #expect(try await events.waitFor(within: .seconds(30), EventLog.isRecovered))
        let error = await #expect(throws: AMQPError.self) { try await first.ack() }
        #expect(error?.code == .staleDelivery)
        // The broker redelivers it on the recovered consumer, flagged, and that one acks fine.
        let again = try #require(try await iterator.next())
        #expect(again.bodyString == "once")
        #expect(again.redelivered)
        try await again.ack()
        try await channel.queueDelete(queue)
        await connection.close()
    }

    /// Deliveries still unread when the connection is lost wait in the consumer's queue, and the
    /// redelivered ones join them there after the recovery: the stale ones are skipped, the
    /// redelivered ones are not (skipping the whole joined batch left the consumer waiting for
    /// ever, with the broker's prefetch full of deliveries nobody would see).
    @Test func redeliveriesJoiningUnreadStaleDeliveriesAreHandedOut() async throws {
        let configuration = try TestBroker.configuration()
        let connection = try await AMQPConnection.open(configuration)
        let events = EventLog(connection)
        let channel = try await connection.openChannel()
        let queue = try await channel.queueDeclare(TestBroker.uniqueName("unread"), durable: true).name
        for index in 0..<10 { try await channel.publish("m\(index)", routingKey: queue) }
        try await channel.basicQos(prefetchCount: 10)
        let consumer = try await channel.consume(queue: queue)
        // All ten reach the consumer's queue; none is read.
        let check = try await connection.openChannel()
        #expect(try await TestBroker.waitForMessageCount(0, in: queue, on: check))
        await check.close()

        try await TestBroker.forceClose(connectionNamed: configuration.connectionName!, reason: "unread test")
        #expect(try await events.waitFor(within: .seconds(30), EventLog.isRecovered))
        // Bounded: with the fault, the next read would wait for ever.
        let limit = abortConnection(connection, after: .seconds(60))
        defer { limit.cancel() }
        var iterator = consumer.makeAsyncIterator()
        var bodies: [String] = []
        for _ in 0..<10 {
            let delivery = try #require(try await iterator.next(), "the consumer ended instead of handing out redeliveries")
            #expect(delivery.redelivered, "a stale delivery from before the recovery was handed out")
            bodies.append(delivery.bodyString)
            try await delivery.ack()
        }
        #expect(bodies == (0..<10).map { "m\($0)" })
        try await channel.queueDelete(queue)
        await connection.close()
    }

    /// A tag kept from before a recovery must not acknowledge the new channel's deliveries
    /// through `multiple`: tags keep growing across recoveries, so an old one is stale.
    @Test func acknowledgeMultipleWithATagFromBeforeARecoveryIsStale() async throws {
        let configuration = try TestBroker.configuration()
        let connection = try await AMQPConnection.open(configuration)
        let events = EventLog(connection)
        let channel = try await connection.openChannel()
        let queue = try await channel.queueDeclare(TestBroker.uniqueName("multiple"), durable: true).name
        for index in 0..<200 { try await channel.publish("m\(index)", routingKey: queue) }
        try await channel.basicQos(prefetchCount: 100)
        let consumer = try await channel.consume(queue: queue)
        var iterator = consumer.makeAsyncIterator()
        var before: [AMQPDelivery] = []
        for _ in 0..<50 { before.append(try #require(try await iterator.next())) }
        let oldTag = before[49].deliveryTag

        try await TestBroker.forceClose(connectionNamed: configuration.connectionName!, reason: "multiple test")
        #expect(try await events.waitFor(within: .seconds(30), EventLog.isRecovered))
        let limit = abortConnection(connection, after: .seconds(60))  // a read that would wait for ever fails
        defer { limit.cancel() }
        // The recovered consumer gets deliveries again (new tags on the broker's side).
        var after: [AMQPDelivery] = []
        for _ in 0..<60 { after.append(try #require(try await iterator.next())) }
        #expect(after.allSatisfy { $0.deliveryTag > oldTag }, "tags grow across the recovery")
        // The fifty received but not yet handed out before the loss are skipped, even those the
        // iterator had already taken from the queue: the first sixty are the broker's redeliveries.
        #expect(after.allSatisfy { $0.redelivered }, "a stale delivery from before the recovery was handed out")
        #expect(after.map(\.bodyString) == (0..<60).map { "m\($0)" })

        let error = await #expect(throws: AMQPError.self) { try await channel.acknowledgeMultiple(upTo: oldTag) }
        #expect(error?.code == .staleDelivery)
        // Nothing was acknowledged: all 200 are back in the queue once the channel closes.
        await channel.close()
        let check = try await connection.openChannel()
        #expect(try await TestBroker.waitForMessageCount(200, in: queue, on: check))
        // And a current tag still acknowledges exactly what it covers.
        let again = try await check.consume(queue: queue)
        var messages = again.makeAsyncIterator()
        var received: [AMQPDelivery] = []
        for _ in 0..<10 { received.append(try #require(try await messages.next())) }
        try await check.acknowledgeMultiple(upTo: received[9].deliveryTag)
        await check.close()
        let last = try await connection.openChannel()
        #expect(try await TestBroker.waitForMessageCount(190, in: queue, on: last))
        try await last.queueDelete(queue)
        await connection.close()
    }

    /// A transaction cut by a recovery is lost as a whole: the commit after it fails and commits
    /// nothing (neither the publishes before the loss nor those after it); the next one works.
    @Test func commitAfterARecoveryFailsAndCommitsNothing() async throws {
        let configuration = try TestBroker.configuration()
        let connection = try await AMQPConnection.open(configuration)
        let events = EventLog(connection)
        let channel = try await connection.openChannel()
        let queue = try await channel.queueDeclare(TestBroker.uniqueName("tx"), durable: true).name
        try await channel.txSelect()
        for index in 0..<10 { try await channel.publish("before \(index)", routingKey: queue) }
        try await TestBroker.forceClose(connectionNamed: configuration.connectionName!, reason: "tx test")
        #expect(try await events.waitFor(within: .seconds(30), EventLog.isRecovered))
        for index in 0..<3 { try await channel.publish("after \(index)", routingKey: queue) }
        let error = await #expect(throws: AMQPError.self) { try await channel.txCommit() }
        #expect(error?.code == .transactionLost)
        #expect(try await channel.queueDeclare(queue, passive: true).messageCount == 0)
        // The channel is still transactional, with a fresh transaction.
        try await channel.publish("next", routingKey: queue)
        #expect(try await channel.queueDeclare(queue, passive: true).messageCount == 0)
        try await channel.txCommit()
        #expect(try await channel.queueDeclare(queue, passive: true).messageCount == 1)
        try await channel.queueDelete(queue)
        await connection.close()
    }

    @Test func reconnectsAreCountedAndLoggedAtInfo() async throws {
        let metrics = testMetrics
        let logs = CapturedLogs.Storage()
        let configuration = try TestBroker.configuration()
        let name = try #require(configuration.connectionName)
        let connection = try await AMQPConnection.open(configuration, logger: CapturedLogs.logger(logs))
        let events = EventLog(connection)
        try await TestBroker.forceClose(connectionNamed: name, reason: "metrics test")
        #expect(try await events.waitFor(within: .seconds(30), EventLog.isRecovered))
        #expect(try metrics.expectCounter("rabbitmq_client_recoveries_total", [("connection", name)]).totalValue == 1)
        #expect(try metrics.expectCounter("rabbitmq_client_reconnect_attempts_total", [("connection", name)]).totalValue >= 1)
        #expect(try metrics.expectTimer("rabbitmq_client_recovery_duration", [("connection", name)]).values.count == 1)

        // Info and above: only the reconnect story, and never the password.
        let loud = logs.all.filter { $0.level >= .info }
        #expect(loud.map(\.message) == ["connection lost; recovering", "reconnecting", "connection recovered"])
        #expect(!logs.all.contains { "\($0.message) \($0.metadata)".contains(configuration.password) })
        #expect(loud.allSatisfy { $0.metadata["amqp.connection"] != nil })
        await connection.close()
    }

    @Test func prefetchTransactionsAndConfirmModeSurviveRecovery() async throws {
        let configuration = try TestBroker.configuration()
        let connection = try await AMQPConnection.open(configuration)
        let events = EventLog(connection)
        let setup = try await connection.openChannel()
        let queue = try await setup.queueDeclare(TestBroker.uniqueName("modes"), durable: true).name
        for index in 0..<20 { try await setup.publish("\(index)", routingKey: queue) }
        let consuming = try await connection.openChannel()
        try await consuming.basicQos(prefetchCount: 7)
        let consumer = try await consuming.consume(queue: queue)  // never acknowledges
        #expect(try await TestBroker.waitForMessageCount(13, in: queue, on: setup))
        let transactional = try await connection.openChannel()
        try await transactional.txSelect()
        let confirming = try await connection.openChannel()
        try await confirming.confirmSelect()

        try await TestBroker.forceClose(connectionNamed: configuration.connectionName!, reason: "modes test")
        #expect(try await events.waitFor(within: .seconds(30), EventLog.isRecovered))
        // The recovered consumer again holds exactly the prefetch.
        #expect(try await TestBroker.waitForMessageCount(13, in: queue, on: setup))
        // Still transactional: a commit is accepted (a 406 otherwise) and publishes.
        try await transactional.publish("committed", routingKey: queue)
        try await transactional.txCommit()
        // Still in confirm mode: the publish gets its confirm.
        try await confirming.publish("confirmed", routingKey: queue)
        #expect(try await TestBroker.waitForMessageCount(15, in: queue, on: setup))
        withExtendedLifetime(consumer) {}
        try await setup.queueDelete(queue)
        await connection.close()
    }

    @Test func closingAChannelWhileRecoveringClosesItAfterwards() async throws {
        let (configuration, proxy) = try TestBroker.configurationThroughProxy()
        defer { proxy.stop() }
        let connection = try await AMQPConnection.open(configuration)
        let events = EventLog(connection)
        let channel = try await connection.openChannel()
        let kept = try await connection.openChannel()
        proxy.cut()
        #expect(try await events.waitFor(within: .seconds(20), EventLog.isDisconnected))
        let closing = Task { await channel.close() }
        try await Task.sleep(for: .milliseconds(200))
        proxy.forward()
        await closing.value
        #expect(!channel.isOpen)
        #expect(kept.isOpen)
        // The number is free again, and the other channel works.
        #expect(try await connection.openChannel().number == channel.number)
        _ = try await kept.queueDeclare("", exclusive: true)
        await connection.close()
    }

    @Test func consumerThatPublishesAndClosesItsChannelDoesNotDeadlock() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        try await channel.confirmSelect()
        let queue = try await channel.queueDeclare("", exclusive: true).name
        let replies = try await channel.queueDeclare("", exclusive: true).name
        for index in 0..<10 { try await channel.publish("\(index)", routingKey: queue) }

        var handled = 0
        for try await delivery in try await channel.consume(queue: queue) {
            // From inside the consumer: a confirmed publish on the same channel, an ack, and
            // at the end, closing the channel the sequence runs on.
            try await channel.publish("reply \(delivery.bodyString)", routingKey: replies)
            try await delivery.ack()
            handled += 1
            if handled == 10 { await channel.close() }
        }
        #expect(handled == 10)
        let other = try await connection.openChannel()
        #expect(try await other.queueDeclare(replies, passive: true).messageCount == 10)
        await connection.close()
    }
}
