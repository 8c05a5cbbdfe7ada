import Foundation
import RabbitMQ
import Testing

/// Messages between this client and pika (Python), an independent AMQP implementation, through
/// the broker: what pika publishes arrives with its values and is forwarded so that pika reads it
/// back as it wrote it; what this client publishes, pika reads with the values meant. The Python
/// side is `Tests/Interop/pika_interop.py` (Debian's `python3-pika`, installed by
/// `scripts/provision`).
@Suite(
    "Interoperability with pika",
    .enabled(if: TestBroker.reachableOrRequired, "needs a broker; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"), .watchdog)
struct InteropTests {
    /// Debian's interpreter, where `python3-pika` lives (a `python3` earlier on the PATH may not
    /// have it); `INTEROP_PYTHON` names another one that has pika.
    static let python = ProcessInfo.processInfo.environment["INTEROP_PYTHON"] ?? "/usr/bin/python3"
    static let script = TestBroker.repositoryRoot + "/Tests/Interop/pika_interop.py"

    /// Runs the pika side; fails the test with its output unless it succeeds.
    /// `sortsHeaders`: the broker is RabbitMQ 4, which delivers headers ordered by key.
    private func pika(_ mode: String, _ queue: String, sortsHeaders: Bool) async throws {
        Watchdog.note("pika \(mode) \(queue)")
        let child = try ChildProcess.start(
            Self.python, [Self.script, mode, queue],
            environment: ["AMQP_URL": TestBroker.url, "HEADERS_SORTED": sortsHeaders ? "1" : "0"])
        defer { child.removeOutput() }
        let status = await child.waitForExit()
        #expect(status == 0, "pika \(mode) exited with \(status):\n\(child.output)")
    }

    @Test func messagesTravelBothWaysWithTheirValues() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let fromPika = TestBroker.uniqueName("interop-from-pika")
        let forwarded = TestBroker.uniqueName("interop-forwarded")
        let fromSwift = TestBroker.uniqueName("interop-from-swift")
        // Durable: RabbitMQ 4 deprecates transient queues that are not exclusive (pika needs them too).
        for queue in [fromPika, forwarded, fromSwift] { _ = try await channel.queueDeclare(queue, durable: true) }
        let sorts = BrokerVersion.isRabbitMQ4(connection)

        try await pika("publish", fromPika, sortsHeaders: sorts)
        var deliveries: [AMQPDelivery] = []
        let deadline = ContinuousClock.now + .seconds(30)
        while deliveries.count < 3, ContinuousClock.now < deadline {
            if let delivery = try await channel.basicGet(queue: fromPika) { deliveries.append(delivery) } else {
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        try #require(deliveries.count == 3)

        // pika's values, as this client reads them.
        let first = deliveries[0].properties
        #expect(first.contentType == "application/json")
        #expect(first.timestamp == AMQPTimestamp(secondsSince1970: 1_790_000_000))
        #expect(first.deliveryMode == .persistent)
        let headers = try #require(first.headers)
        #expect(Array(headers.keys.prefix(2)) == (sorts ? ["alpha", "big"] : ["zeta", "alpha"]))
        #expect(headers["int"] == .int32(7))
        #expect(headers["big"] == .int64(1 << 40))
        #expect(headers["negative"] == .int32(-5))
        #expect(headers["bool"] == .bool(true))
        #expect(headers["none"] == .void)
        #expect(headers["bytes"] == .bytes([0, 0xFF, 0xC3]))
        #expect(headers["decimal"] == .decimal(scale: 2, value: -12345))
        #expect(headers["when"] == .timestamp(AMQPTimestamp(secondsSince1970: 1_796_128_205)))
        #expect(headers["unicode"] == .string("café ☃ 😀"))
        #expect(headers["nested"]?.tableValue?["table"]?.tableValue?.keys == ["b", "a"])
        #expect(deliveries[2].body == Array(0...255))

        // Forwarded as received: pika reads each back as it published it.
        for delivery in deliveries {
            try await channel.publish(delivery.body, routingKey: forwarded, properties: delivery.properties)
            try await delivery.ack()
        }
        try await pika("verify", forwarded, sortsHeaders: sorts)

        // This client's values, as pika reads them.
        let sent = BasicProperties(
            contentType: "text/plain",
            headers: [
                "string": "héllo", "int16": .int16(-1600), "uint16": .uint16(60_000), "int32": .int32(-320_000),
                "uint32": .uint32(4_000_000_000), "int64": .int64(64_000_000_000),
                "decimal": .decimal(scale: 2, value: -12345), "bool": true, "void": .void, "bytes": .bytes([0, 1, 0xFF]),
                "timestamp": .timestamp(AMQPTimestamp(secondsSince1970: 1_790_000_000)),
                "table": ["k": "v", "list": [1, "two"]],
            ],
            deliveryMode: .persistent, messageID: "from-swift", timestamp: AMQPTimestamp(secondsSince1970: 1_790_000_001),
            type: "Ping")
        try await channel.publish("ping", routingKey: fromSwift, properties: sent)
        try await pika("read", fromSwift, sortsHeaders: sorts)

        for queue in [fromPika, forwarded, fromSwift] { try await channel.queueDelete(queue) }
        await connection.close()
    }
}
