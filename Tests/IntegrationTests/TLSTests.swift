import Foundation
import Logging
import RabbitMQ
import Testing

/// TLS against a throwaway node with a TLS listener and certificates made for the test
/// (`scripts/make-test-certificates`): verification, refusals, client certificates, EXTERNAL.
@Suite(
    "TLS against a real broker",
    .enabled(if: TestBroker.reachableOrRequired, "needs a broker; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"), .watchdog)
struct TLSTests {
    @Test func verificationClientCertificatesAndExternal() async throws {
        let certificates = FileManager.default.temporaryDirectory.appendingPathComponent(TestBroker.uniqueName("tls")).path
        try await TestBroker.shell("\(TestBroker.repositoryRoot)/scripts/make-test-certificates", [certificates])
        defer { try? FileManager.default.removeItem(atPath: certificates) }
        try await ThrowawayBroker.with("tls", tlsDirectory: certificates) { broker in
            let port = try #require(broker.tlsPort)
            func configuration(host: String = "localhost", ca: String = "ca.pem") throws -> AMQPConnection.Configuration {
                var configuration = try AMQPConnection.Configuration(
                    url: "amqps://guest:guest@\(host):\(port)/%2f?cacertfile=\(certificates)/\(ca)")
                configuration.connectionTimeout = .seconds(10)
                configuration.recovery = .disabled
                return configuration
            }

            // Verified: the broker's certificate chains to the CA and names localhost.
            try await AMQPConnection.withConnection(configuration()) { connection in
                try await connection.withChannel { channel in
                    let queue = try await channel.queueDeclare("", exclusive: true).name
                    try await channel.publish("over TLS", routingKey: queue)
                    #expect(try await TestBroker.waitForMessageCount(1, in: queue, on: channel))
                    #expect(try await channel.basicGet(queue: queue, autoAck: true)?.bodyString == "over TLS")
                }
            }

            // A certificate from another CA is refused.
            let otherCA = await #expect(throws: AMQPError.self) {
                try await AMQPConnection.open(configuration(ca: "other-ca.pem"))
            }
            #expect(otherCA?.code == .connectionFailed)

            // The right CA, but the certificate does not name the host connected to.
            let wrongHost = await #expect(throws: AMQPError.self) {
                try await AMQPConnection.open(configuration(host: "127.0.0.1"))
            }
            #expect(wrongHost?.code == .connectionFailed)

            // Verification turned off: connects to the unverifiable broker, and says so once.
            let logs = CapturedLogs.Storage()
            var unverified = try configuration(ca: "other-ca.pem")
            unverified.tls?.verifyPeer = false
            let insecure = try await AMQPConnection.open(unverified, logger: CapturedLogs.logger(logs))
            await insecure.close()
            #expect(logs.all.filter { $0.level == .warning }.map(\.message) == ["TLS certificate verification is turned off"])

            // SASL EXTERNAL: the client certificate (its key encrypted) is the identity.
            var external = try configuration()
            external.authMechanism = .external
            external.tls?.certificateFile = "\(certificates)/client.pem"
            external.tls?.keyFile = "\(certificates)/client-encrypted.key"
            external.tls?.keyPassword = "test-passphrase"
            try await AMQPConnection.withConnection(external) { connection in
                _ = try await connection.withChannel { try await $0.queueDeclare("", exclusive: true) }
            }

            // A wrong passphrase fails before anything is sent; the passphrase is in no error.
            external.tls?.keyPassword = "wrong-passphrase"
            let badKey = await #expect(throws: AMQPError.self) { try await AMQPConnection.open(external) }
            #expect(badKey?.code == .invalidArgument)
            #expect(badKey.map { "\($0)".contains("wrong-passphrase") } == false)

            // A plain AMQP client on the TLS port fails (no hang).
            var plain = try AMQPConnection.Configuration(url: "amqp://guest:guest@127.0.0.1:\(port)/%2f")
            plain.connectionTimeout = .seconds(5)
            await #expect(throws: AMQPError.self) { try await AMQPConnection.open(plain) }
        }
    }
}
