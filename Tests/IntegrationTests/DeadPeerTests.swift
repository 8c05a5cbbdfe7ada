import Foundation
import RabbitMQ
import Testing

/// A broker that hangs or vanishes, seen through a proxy the test controls, by a connection
/// without automatic recovery (the recovery suite covers the default).
@Suite(
    "Dead and hung peers without recovery",
    .enabled(if: TestBroker.reachableOrRequired, "needs a broker; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"), .watchdog)
struct DeadPeerTests {
    private func connectThroughProxy(heartbeat: UInt16) async throws -> (AMQPConnection, TCPProxy) {
        var (configuration, proxy) = try TestBroker.configurationThroughProxy(heartbeat: heartbeat)
        configuration.recovery = .disabled
        return (try await AMQPConnection.open(configuration), proxy)
    }

    /// Waits (bounded) until the connection reports itself closed.
    private func waitUntilClosed(_ connection: AMQPConnection, within limit: Duration) async throws {
        let deadline = ContinuousClock.now + limit
        while connection.isOpen, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    @Test func stalledPeerIsDetectedByMissedHeartbeats() async throws {
        let (connection, proxy) = try await connectThroughProxy(heartbeat: 1)
        defer { proxy.stop() }
        let channel = try await connection.openChannel()
        try await channel.queueDeclare("", exclusive: true)

        proxy.stall()
        // Two 1 s heartbeat intervals plus the loop's tick; the bound is for liveness only.
        try await waitUntilClosed(connection, within: .seconds(15))
        #expect(!connection.isOpen)
        #expect(connection.closeReason?.code == .heartbeatMissed)

        let later = await #expect(throws: AMQPError.self) { try await channel.queueDeclare("", exclusive: true) }
        #expect(later?.code == .heartbeatMissed)
    }

    @Test func callWaitingOnAStalledPeerFailsWhenHeartbeatsStop() async throws {
        let (connection, proxy) = try await connectThroughProxy(heartbeat: 1)
        defer { proxy.stop() }
        let channel = try await connection.openChannel()
        proxy.stall()
        // The declare is sent into the stalled proxy and never answered.
        let error = await #expect(throws: AMQPError.self) { try await channel.queueDeclare("", exclusive: true) }
        #expect(error?.code == .heartbeatMissed)
    }

    @Test func cutConnectionFailsCallsPromptly() async throws {
        let (connection, proxy) = try await connectThroughProxy(heartbeat: 60)
        defer { proxy.stop() }
        let channel = try await connection.openChannel()
        try await channel.queueDeclare("", exclusive: true)

        proxy.cut()
        // With 60 s heartbeats, only the socket's end can tell the loop so soon.
        try await waitUntilClosed(connection, within: .seconds(15))
        #expect(connection.closeReason?.code == .connectionClosed)
        let later = await #expect(throws: AMQPError.self) { try await connection.openChannel() }
        #expect(later?.code == .connectionClosed)
    }
}
