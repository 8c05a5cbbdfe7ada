import Foundation
import RabbitMQ
import Testing
import WireFixtures

/// A peer that delivers what other clients publish (``HostileMessages``): the consumer receives
/// each, republishes it with the properties it came with, and the peer compares the bytes.
@Suite(
    "Forwarding messages from other clients",
    .enabled(if: TestBroker.reachableOrRequired, "needs a broker; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"), .watchdog)
struct ForwardingTests {
    typealias Frame = FakeBroker.Frame

    /// What the fake peer received back from the client.
    final class Received: @unchecked Sendable {
        // @unchecked: every property is read and written under `lock`.
        private let lock = NSLock()
        private var _published: [[UInt8]] = []
        private var _acknowledged: [UInt64] = []
        private var _rejected: [(tag: UInt64, requeue: Bool)] = []

        func published(_ properties: [UInt8]) { lock.withLock { _published.append(properties) } }
        func acknowledged(_ tag: UInt64) { lock.withLock { _acknowledged.append(tag) } }
        func rejected(_ tag: UInt64, requeue: Bool) { lock.withLock { _rejected.append((tag, requeue)) } }
        var snapshot: (published: [[UInt8]], acknowledged: [UInt64], rejected: [(tag: UInt64, requeue: Bool)]) {
            lock.withLock { (_published, _acknowledged, _rejected) }
        }
    }

    private static func u64(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        bytes.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// Opens channel 1, answers `basic.consume`, delivers `messages` (tags 1, 2, …) and records
    /// what comes back until the client closes the connection. `announcedBodySize` replaces the
    /// body size in each content header (the body frame stays as it is).
    private static func serve(
        _ session: FakeBroker.Session, delivering messages: [[UInt8]], into received: Received,
        announcedBodySize: UInt64? = nil, tags: [UInt64]? = nil
    ) {
        guard session.handshake() else { return }
        func method(_ classID: UInt16, _ methodID: UInt16, _ arguments: [UInt8], channel: UInt16 = 1) {
            session.send(Frame.method(channel: channel, classID: classID, methodID: methodID, arguments: arguments))
        }
        var publishing = false
        while let (type, channel, payload) = session.readWholeFrame() {
            if type == 2, publishing {
                received.published(Array(payload.dropFirst(12)))  // class, weight, body size
                continue
            }
            guard type == 1, payload.count >= 4 else { continue }
            let id = (UInt16(payload[0]) << 8 | UInt16(payload[1]), UInt16(payload[2]) << 8 | UInt16(payload[3]))
            let arguments = payload.dropFirst(4)
            switch id {
            case (20, 10): method(20, 11, Frame.long(0), channel: channel)
            case (20, 40): method(20, 41, [], channel: channel)
            case (60, 10): method(60, 11, [], channel: channel)
            case (60, 20):
                // reserved short, queue, consumer tag
                let queueLength = Int(arguments[arguments.startIndex + 2])
                let tagStart = arguments.startIndex + 3 + queueLength
                let tag = Array(arguments[(tagStart + 1)..<(tagStart + 1 + Int(arguments[tagStart]))])
                method(60, 21, [UInt8(tag.count)] + tag)
                for (index, properties) in messages.enumerated() {
                    let body = Array("message \(index)".utf8)
                    let deliveryTag = tags?[index] ?? UInt64(index + 1)
                    method(60, 60, [UInt8(tag.count)] + tag + Wire.u64(deliveryTag) + [0] + Frame.shortString("")
                        + Frame.shortString("in"))
                    let size = announcedBodySize ?? UInt64(body.count)
                    session.send(Frame.raw(type: 2, channel: 1, payload: Wire.u16(60) + Wire.u16(0) + Wire.u64(size) + properties))
                    session.send(Frame.raw(type: 3, channel: 1, payload: body))
                }
            case (60, 40): publishing = true
            case (60, 80): received.acknowledged(u64(arguments))
            case (60, 90): received.rejected(u64(arguments), requeue: arguments.last == 1)
            case (60, 120): received.rejected(u64(arguments), requeue: arguments.last.map { $0 & 2 != 0 } ?? false)
            case (10, 50):
                method(10, 51, [], channel: 0)
                return
            default: continue
            }
        }
    }

    /// A connection (without recovery) to a fake peer serving `messages` as ``serve(_:delivering:into:announcedBodySize:tags:)``
    /// does, with a channel consuming from it; `body` runs with them, then the connection closes.
    private static func withFakePeer<Result>(
        delivering messages: [[UInt8]], into received: Received = Received(), announcedBodySize: UInt64? = nil,
        tags: [UInt64]? = nil, _ body: (AMQPConnection, AMQPChannel, AMQPConsumer) async throws -> Result
    ) async throws -> Result {
        let server = try FakeBroker { session in
            serve(session, delivering: messages, into: received, announcedBodySize: announcedBodySize, tags: tags)
        }
        defer { server.stop() }
        var configuration = AMQPConnection.Configuration(host: "127.0.0.1", port: server.port)
        configuration.recovery = .disabled
        configuration.connectionTimeout = .seconds(10)
        let connection = try await AMQPConnection.open(configuration)
        do {
            let channel = try await connection.openChannel()
            let result = try await body(connection, channel, try await channel.consume(queue: "in"))
            await connection.close()
            return result
        } catch {
            await connection.close()
            throw error
        }
    }

    /// Consumes `delivered` from a fake peer, republishing each delivery to it with the
    /// properties it came with; returns those properties and what the peer received back.
    static func forward(_ delivered: [[UInt8]], expecting count: Int) async throws -> ([BasicProperties], Received) {
        let received = Received()
        let properties = try await withFakePeer(delivering: delivered, into: received) { _, channel, consumer in
            var properties: [BasicProperties] = []
            for try await delivery in consumer {
                try await channel.publish(delivery.body, routingKey: "out", properties: delivery.properties)
                try await delivery.ack()
                properties.append(delivery.properties)
                if properties.count == count { break }
            }
            let deadline = ContinuousClock.now + .seconds(30)
            while received.snapshot.acknowledged.count < count, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            return properties
        }
        return (properties, received)
    }

    /// What librabbitmq decodes (0.14 and later refuse 150 levels of nesting; see
    /// ``headersNested150LevelsDeepArriveOrFailTheConnectionByLibrabbitmqRelease()``).
    static var decodable: [HostileMessage] { HostileMessages.all.filter(Librabbitmq.decodes) }

    @Test func everyMessageIsRepublishedByteForByteAndTheTooDeepOneIsRejected() async throws {
        let hostile = Self.decodable
        let messages = hostile.map(\.properties)
        // The too-deep message comes second: the ones after it must still flow. (librabbitmq
        // 0.14 and later end the connection over it instead: a test of its own.)
        let delivered =
            Librabbitmq.refusesDeepNesting
            ? messages : [messages[0], HostileMessages.tooDeep.properties] + messages.dropFirst()
        let (_, received) = try await Self.forward(delivered, expecting: messages.count)

        let (published, acknowledged, rejected) = received.snapshot
        #expect(published.count == messages.count)
        for (index, (sent, came)) in zip(published, messages).enumerated() {
            #expect(sent == came, "\(hostile[index]) changed on the way")
        }
        if Librabbitmq.refusesDeepNesting {
            #expect(acknowledged == Array(1...UInt64(delivered.count)))
        } else {
            #expect(acknowledged == [1] + Array(3...UInt64(delivered.count)))
            #expect(rejected.map(\.tag) == [2])
            #expect(rejected.first?.requeue == false)
        }
    }

    /// librabbitmq 0.14 and later refuse to decode headers nested more than 100 levels: the
    /// connection fails with a protocol error. 0.11 decodes them, and the client holds up to 256
    /// levels. With recovery the message comes back to the next connection; a quorum queue's
    /// delivery limit ends that (see EventDispatcherTests).
    @Test func headersNested150LevelsDeepArriveOrFailTheConnectionByLibrabbitmqRelease() async throws {
        try await Self.withFakePeer(delivering: [HostileMessages.nested(150).properties]) { _, _, consumer in
            if Librabbitmq.refusesDeepNesting {
                let error = await #expect(throws: AMQPError.self) { for try await _ in consumer {} }
                #expect(error?.code == .protocolError, "\(String(describing: error))")
            } else {
                var depth = 0
                for try await delivery in consumer {
                    var cursor = delivery.properties.headers?["root"]
                    while case .table(let inner)? = cursor { depth += 1; cursor = inner["n"] }
                    #expect(cursor == .int32(7))
                    break
                }
                #expect(depth == 150)
            }
        }
    }

    @Test func throughRabbitMQEveryMessageArrivesAsItWasPublished() async throws {
        let hostile = Self.decodable.filter(\.rabbitMQTakesIt)
        let (properties, _) = try await Self.forward(hostile.map(\.properties), expecting: hostile.count)
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        try await channel.confirmSelect()
        let queue = try await channel.queueDeclare("", exclusive: true).name
        for (message, sent) in zip(hostile, properties) {
            try await channel.publish(message.name, routingKey: queue, properties: sent)
            let got = try #require(try await channel.basicGet(queue: queue, autoAck: true))
            // RabbitMQ 4 re-encodes headers (sorted, the first of duplicate keys, `L` as `l`).
            #expect(got.properties == BrokerVersion.propertiesAsDelivered(sent, by: connection), "\(message) changed through RabbitMQ")
        }
        await connection.close()
    }

    /// A content header announcing more bytes than any message has: the connection fails with a
    /// protocol error (a body size beyond `Int.max`) or waits for the bytes without reserving
    /// them all up front; the process lives on either way.
    @Test(arguments: [UInt64.max, 1 << 40])
    func anImpossibleBodySizeFailsTheConnectionNotTheProcess(announced: UInt64) async throws {
        try await Self.withFakePeer(delivering: [WireProperties().encoded], announcedBodySize: announced) {
            connection, _, consumer in
            if announced > UInt64(Int.max) {
                let error = await #expect(throws: AMQPError.self) { for try await _ in consumer {} }
                #expect(error?.code == .protocolError, "\(String(describing: error))")
            } else {
                // The body never completes; the connection is still there and can be closed.
                try await Task.sleep(for: .milliseconds(200))
                #expect(connection.isOpen)
            }
        }
    }

    /// RabbitMQ numbers a channel's deliveries 1, 2, 3, …: a tag that falls back or leaps ahead
    /// (which would make the client track a vast range of outstanding tags) fails the connection
    /// with a protocol error, after the deliveries before it were handed over.
    @Test(arguments: [[1, 1 << 60], [5, 3], [1, 0]] as [[UInt64]])
    func deliveryTagsOutOfSequenceFailTheConnectionNotTheProcess(tags: [UInt64]) async throws {
        try await Self.withFakePeer(delivering: tags.map { _ in WireProperties().encoded }, tags: tags) { _, _, consumer in
            var delivered = 0
            let error = await #expect(throws: AMQPError.self) {
                for try await _ in consumer { delivered += 1 }
            }
            #expect(error?.code == .protocolError, "\(String(describing: error))")
            #expect(delivered == 1)
        }
    }
}
