import Foundation
import RabbitMQ
import Testing

@Suite(
    "Connections against a real broker",
    .enabled(if: TestBroker.reachableOrRequired, "needs a broker; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"), .watchdog)
struct ConnectionTests {
    @Test func openAndClose() async throws {
        let configuration = try TestBroker.configuration()
        let connection = try await AMQPConnection.open(configuration)
        #expect(connection.isOpen)
        #expect(connection.negotiated.frameMax == 131_072)
        #expect(connection.negotiated.channelMax > 0)
        #expect(connection.negotiated.heartbeat == 60)
        #expect(connection.serverProperties["product"]?.stringValue == "RabbitMQ")
        await connection.close()
        #expect(!connection.isOpen)
        #expect(connection.closeReason?.code == .connectionClosed)
        await connection.close()  // idempotent

        let error = await #expect(throws: AMQPError.self) { try await connection.openChannel() }
        #expect(error?.code == .connectionClosed)
    }

    @Test func brokerSeesTheConnectionNameAndCapabilities() async throws {
        let configuration = try TestBroker.configuration()
        let connection = try await AMQPConnection.open(configuration)
        defer { Task { await connection.close() } }
        let name = try #require(configuration.connectionName)
        let line = try #require(try await TestBroker.clientProperties(ofConnectionNamed: name)?.properties)
        for capability in ["publisher_confirms", "consumer_cancel_notify", "basic.nack", "connection.blocked",
                           "authentication_failure_close", "exchange_exchange_bindings", "per_consumer_qos"] {
            #expect(line.contains("{\"\(capability)\",true}"), "\(capability) missing in \(line)")
        }
        #expect(line.contains("swift-rabbitmq"))
    }

    @Test func twoHundredChannelsOpenedConcurrently() async throws {
        let connection = try await TestBroker.connect()
        let numbers = try await withThrowingTaskGroup(of: UInt16.self) { group in
            for _ in 0..<200 {
                group.addTask {
                    let channel = try await connection.openChannel()
                    let queue = try await channel.queueDeclare("", exclusive: true)
                    #expect(queue.name.hasPrefix("amq.gen-"))
                    return channel.number
                }
            }
            return try await group.reduce(into: Set<UInt16>()) { $0.insert($1) }
        }
        #expect(numbers.count == 200)
        #expect(numbers == Set(1...200))
        await connection.close()
    }

    @Test func channelNumbersAreReusedAfterClose() async throws {
        let connection = try await TestBroker.connect()
        let first = try await connection.openChannel()
        let second = try await connection.openChannel()
        await first.close()
        #expect(!first.isOpen)
        let third = try await connection.openChannel()
        #expect(third.number == first.number)
        #expect(third != first)
        let error = await #expect(throws: AMQPError.self) { try await first.queueDeclare("", exclusive: true) }
        #expect(error?.code == .channelClosed)
        try await third.queueDeclare("", exclusive: true)
        try await second.queueDeclare("", exclusive: true)
        await connection.close()
    }

    @Test func closingAChannelWhileOthersRunRPCs() async throws {
        let connection = try await TestBroker.connect()
        let busy = try await connection.openChannel()
        let closing = try await connection.openChannel()
        let queue = try await busy.queueDeclare("", exclusive: true).name

        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    for _ in 0..<100 {
                        let result = try await busy.queueDeclare(queue, passive: true)
                        #expect(result.name == queue)
                    }
                }
            }
            group.addTask {
                try await closing.queueDeclare("", exclusive: true)
                await closing.close()
            }
            try await group.waitForAll()
        }
        #expect(busy.isOpen)
        #expect(!closing.isOpen)
        #expect(closing.closeReason?.code == .channelClosed)
        await connection.close()
    }

    @Test func pipelinedRPCsOnOneChannelResolveInOrder() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let names = (0..<50).map { _ in TestBroker.uniqueName("pipelined") }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for name in names {
                group.addTask {
                    let result = try await channel.queueDeclare(name, exclusive: true)
                    #expect(result.name == name)
                }
            }
            try await group.waitForAll()
        }
        await connection.close()
    }

    @Test func passiveDeclareOfAMissingQueueFailsOnlyThatChannel() async throws {
        let connection = try await TestBroker.connect()
        let failing = try await connection.openChannel()
        let other = try await connection.openChannel()
        let missing = TestBroker.uniqueName("missing")

        let error = await #expect(throws: AMQPError.self) { try await failing.queueDeclare(missing, passive: true) }
        #expect(error?.code == .notFound)
        #expect(error?.replyCode == 404)
        #expect(error?.replyText?.contains("no queue '\(missing)'") == true)
        #expect(error?.classID == 50 && error?.methodID == 10)
        #expect(error.map { "\($0)" }?.contains("queue.declare") == true)

        #expect(!failing.isOpen)
        let later = await #expect(throws: AMQPError.self) { try await failing.queueDeclare("", exclusive: true) }
        #expect(later?.code == .channelClosed)
        #expect(later?.replyCode == 404)

        #expect(connection.isOpen)
        #expect(other.isOpen)
        try await other.queueDeclare("", exclusive: true)
        // The closed number is acknowledged (close-ok) and reusable: no 504 from the broker.
        let reopened = try await connection.openChannel()
        try await reopened.queueDeclare("", exclusive: true)
        await connection.close()
    }

    @Test func rejectsOverlongNamesBeforeSending() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let error = await #expect(throws: AMQPError.self) {
            try await channel.queueDeclare(String(repeating: "q", count: 256))
        }
        #expect(error?.code == .invalidArgument)
        let badArguments = await #expect(throws: AMQPError.self) {
            try await channel.queueDeclare("", exclusive: true, arguments: [String(repeating: "k", count: 256): 1])
        }
        #expect(badArguments?.code == .invalidArgument)
        #expect(channel.isOpen)
        try await channel.queueDeclare(String(repeating: "q", count: 255), exclusive: true)
        await connection.close()
    }

    @Test func idleConnectionWithOneSecondHeartbeatSurvivesSixSeconds() async throws {
        let connection = try await TestBroker.connect(heartbeat: 1)
        #expect(connection.negotiated.heartbeat == 1)
        try await Task.sleep(for: .seconds(6))
        #expect(connection.isOpen)
        let channel = try await connection.openChannel()
        try await channel.queueDeclare("", exclusive: true)
        await connection.close()
        #expect(connection.closeReason?.message.contains("closed by the application") == true)
    }

    @Test func heartbeatsOffStillClosesCleanly() async throws {
        let connection = try await TestBroker.connect(heartbeat: 0)
        #expect(connection.negotiated.heartbeat == 0)
        let channel = try await connection.openChannel()
        try await channel.queueDeclare("", exclusive: true)
        try await Task.sleep(for: .seconds(2))
        await connection.close()
        #expect(connection.closeReason?.code == .connectionClosed)
        #expect(connection.closeReason?.replyCode == nil)
    }

    @Test func wrongPasswordIsAccessRefused() async throws {
        var configuration = try TestBroker.configuration()
        configuration.password = "definitely-wrong-\(UUID())"
        let error = await #expect(throws: AMQPError.self) { try await AMQPConnection.open(configuration) }
        // Refused, not timed out (the code would be .timeout): no wall clock needed.
        #expect(error?.code == .accessRefused)
        #expect(error?.replyCode == 403)
        #expect(error?.replyText?.contains("ACCESS_REFUSED") == true)
        #expect(error.map { "\($0)".contains(configuration.password) } == false)
    }

    @Test func unknownVirtualHostIsRefused() async throws {
        var configuration = try TestBroker.configuration()
        configuration.virtualHost = "no-such-vhost-\(UUID())"
        let error = await #expect(throws: AMQPError.self) { try await AMQPConnection.open(configuration) }
        #expect(error?.replyCode == 530)
        #expect(error?.replyText?.contains("NOT_ALLOWED") == true)
    }

    @Test func refusedPortFailsToConnect() async throws {
        var configuration = try TestBroker.configuration()
        configuration.host = "127.0.0.1"
        configuration.port = try TCPProbe.closedPort()
        let error = await #expect(throws: AMQPError.self) { try await AMQPConnection.open(configuration) }
        #expect(error?.code == .connectionFailed)
    }

    /// A broker that is still starting: with a first-connection retry, open keeps trying (with
    /// the recovery's backoff) until it answers; wrong credentials still fail at the first try.
    @Test func firstConnectionIsRetriedUntilTheBrokerAnswers() async throws {
        var (configuration, proxy) = try TestBroker.configurationThroughProxy()
        defer { proxy.stop() }
        configuration.recovery.firstConnectionRetry = .seconds(120)
        proxy.cut()  // every connection is closed at once, as by a broker not up yet
        let opening = Task { try await AMQPConnection.open(configuration) }
        while proxy.acceptedConnections < 3 { try await Task.sleep(for: .milliseconds(20)) }
        proxy.forward()
        let connection = try await opening.value
        try await connection.withChannel { _ = try await $0.queueDeclare("", exclusive: true) }
        await connection.close()

        var wrong = configuration
        wrong.password = "definitely-wrong-\(UUID())"
        let before = proxy.acceptedConnections
        let error = await #expect(throws: AMQPError.self) { try await AMQPConnection.open(wrong) }
        #expect(error?.code == .accessRefused)
        #expect(proxy.acceptedConnections == before + 1, "a refused login is not retried")
    }

    @Test func silentPeerTimesOutWithinTheConnectTimeout() async throws {
        let listener = try TCPProbe.SilentListener()
        var configuration = try TestBroker.configuration()
        configuration.host = "127.0.0.1"
        configuration.port = listener.port
        configuration.connectionTimeout = .seconds(1)
        let error = await #expect(throws: AMQPError.self) { try await AMQPConnection.open(configuration) }
        // The deadline fired (nothing else yields .timeout); how long that took on a loaded
        // machine is not asserted.
        #expect(error?.code == .timeout)
        withExtendedLifetime(listener) {}
    }

    @Test func brokerForcedCloseWithoutRecoveryFailsPendingAndLaterCalls() async throws {
        var configuration = try TestBroker.configuration()
        configuration.recovery = .disabled
        let connection = try await AMQPConnection.open(configuration)
        let channel = try await connection.openChannel()
        let queue = try await channel.queueDeclare("", exclusive: true).name

        // Keep RPCs in flight on several channels while the operator closes the connection.
        let busy = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        let own = try await connection.openChannel()
                        while true { try await own.queueDeclare(queue, passive: true) }
                    }
                }
                try await group.waitForAll()
            }
        }
        try await Task.sleep(for: .milliseconds(200))
        try await TestBroker.forceClose(connectionNamed: configuration.connectionName!, reason: "closed by the test")

        let pending = await #expect(throws: AMQPError.self) { try await busy.value }
        #expect(pending?.code == .connectionClosed)
        #expect(pending?.replyCode == 320)
        #expect(pending?.replyText?.contains("closed by the test") == true)

        let later = await #expect(throws: AMQPError.self) { try await channel.queueDeclare("", exclusive: true) }
        #expect(later?.code == .connectionClosed)
        #expect(later?.replyCode == 320)
        let laterOpen = await #expect(throws: AMQPError.self) { try await connection.openChannel() }
        #expect(laterOpen?.replyText?.contains("CONNECTION_FORCED") == true)
        #expect(!connection.isOpen)
        #expect(!channel.isOpen)
        #expect(connection.closeReason?.replyCode == 320)
        await connection.close()  // harmless on a closed connection
    }

    @Test func closeFailsCallsWaitingForReplies() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let queue = try await channel.queueDeclare("", exclusive: true).name
        let busy = Task {
            while true { try await channel.queueDeclare(queue, passive: true) }
        }
        try await Task.sleep(for: .milliseconds(100))
        await connection.close()
        let error = await #expect(throws: AMQPError.self) { try await busy.value }
        #expect(error?.code == .connectionClosed)
        #expect(error?.message.contains("closed by the application") == true)
    }

    @Test func releasedConnectionIsTornDown() async throws {
        var configuration = try TestBroker.configuration()
        let name = TestBroker.uniqueName("released")
        configuration.connectionName = name
        do {
            let connection = try await AMQPConnection.open(configuration)
            _ = try await connection.openChannel()
        }
        // The broker notices the socket closing; allow it a moment to update its listing.
        var listed = true
        for _ in 0..<20 where listed {
            try await Task.sleep(for: .milliseconds(250))
            listed = try await TestBroker.connectionPid(named: name) != nil
        }
        #expect(!listed)
    }

    @Test func scopedHelpersClose() async throws {
        let configuration = try TestBroker.configuration()
        let (connection, channel) = try await AMQPConnection.withConnection(configuration) { connection in
            let channel = try await connection.withChannel { channel in
                try await channel.queueDeclare("", exclusive: true)
                return channel
            }
            #expect(!channel.isOpen)
            return (connection, channel)
        }
        #expect(!connection.isOpen)
        #expect(!channel.isOpen)
    }
}
