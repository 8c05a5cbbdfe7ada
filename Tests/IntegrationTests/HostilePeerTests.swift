import Foundation
import RabbitMQ
import Testing

/// A peer that sends what no broker should: the connection fails with a typed error, the
/// process keeps running, and other connections are unaffected.
@Suite(
    "Hostile peers",
    .enabled(if: TestBroker.reachableOrRequired, "needs a broker; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"), .watchdog)
struct HostilePeerTests {
    typealias Frame = FakeBroker.Frame

    /// Connects to a fake broker that completes the handshake, then sends `hostile`; returns
    /// why the connection ended.
    private func failure(after hostile: [UInt8], thenClose: Bool = false) async throws -> AMQPError? {
        let server = try FakeBroker { session in
            guard session.handshake() else { return }
            Thread.sleep(forTimeInterval: 0.2)
            session.send(hostile)
            if !thenClose { Thread.sleep(forTimeInterval: 5) }
        }
        defer { server.stop() }
        var configuration = AMQPConnection.Configuration(host: "127.0.0.1", port: server.port)
        configuration.recovery = .disabled
        configuration.connectionTimeout = .seconds(5)
        let connection = try await AMQPConnection.open(configuration)
        let deadline = ContinuousClock.now + .seconds(10)
        while connection.isOpen, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(!connection.isOpen)
        return connection.closeReason
    }

    @Test func hostileFramesFailTheirConnectionOnly() async throws {
        // A healthy connection to the real broker lives through all of it.
        let healthy = try await TestBroker.connect()
        let channel = try await healthy.openChannel()

        // librabbitmq 0.11 skips a frame of unknown type rather than failing: the connection
        // lives on until the peer closes it, and the close is reported.
        let unknownType = try await failure(after: Frame.raw(type: 9, channel: 0, payload: [1, 2, 3]), thenClose: true)
        #expect(
            unknownType?.code == .protocolError || unknownType?.code == .connectionClosed,
            "\(String(describing: unknownType))")

        let badFrameEnd = try await failure(after: [1, 0, 0, 0, 0, 0, 4, 0, 10, 0, 50, 0x00])
        #expect(badFrameEnd?.code == .protocolError, "\(String(describing: badFrameEnd))")

        let oversized = try await failure(after: [1, 0, 0] + Frame.long(64 << 20) + [0, 10])
        #expect(
            oversized?.code == .protocolError || oversized?.code == .connectionClosed, "\(String(describing: oversized))")

        let truncated = try await failure(
            after: Array(Frame.method(channel: 0, classID: 10, methodID: 50, arguments: Frame.short(320)).prefix(9)),
            thenClose: true)
        #expect(truncated?.code == .connectionClosed, "\(String(describing: truncated))")

        let deliveryOnUnopenedChannel = try await failure(
            after: Frame.method(
                channel: 7, classID: 60, methodID: 60,
                arguments: Frame.shortString("tag") + [0, 0, 0, 0, 0, 0, 0, 1] + [0] + Frame.shortString("")
                    + Frame.shortString("key")))
        #expect(deliveryOnUnopenedChannel?.code == .protocolError, "\(String(describing: deliveryOnUnopenedChannel))")

        let unexpectedMethod = try await failure(
            after: Frame.method(channel: 0, classID: 60, methodID: 80, arguments: [0, 0, 0, 0, 0, 0, 0, 1, 0]))
        #expect(unexpectedMethod?.code == .protocolError, "\(String(describing: unexpectedMethod))")

        // Garbage instead of connection.start: opening fails with a typed error.
        let garbage = try FakeBroker { session in
            _ = session.read(8)
            session.send(Array("HTTP/1.1 400 Bad Request\r\n\r\n".utf8))
        }
        defer { garbage.stop() }
        var configuration = AMQPConnection.Configuration(host: "127.0.0.1", port: garbage.port)
        configuration.connectionTimeout = .seconds(5)
        await #expect(throws: AMQPError.self) { try await AMQPConnection.open(configuration) }

        #expect(healthy.isOpen)
        _ = try await channel.queueDeclare("", exclusive: true)
        await healthy.close()
    }
}
