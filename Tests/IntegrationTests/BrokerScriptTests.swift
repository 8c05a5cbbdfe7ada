import Foundation
import RabbitMQ
import Testing

/// `scripts/broker`, which every broker test stands on: brokers started at the same time must
/// never share a port.
@Suite(
    "The broker script's port reservations",
    .enabled(if: TestBroker.reachableOrRequired, "needs a broker; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"), .watchdog)
struct BrokerScriptTests {
    /// Reservations left behind by brokers that are gone (a test run that was killed) are taken
    /// over after a while. Two brokers starting together used to take the same stale reservation
    /// over, both starting on its port: one of them never ran, and the tests using it failed.
    @Test func brokersStartingTogetherTakeStaleReservationsOverOnePortEach() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("broker-ports-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        // Every port the script may pick is reserved by a broker whose state file is gone,
        // ten minutes ago: stale.
        let ports = folder.appendingPathComponent("swift-rabbitmq-broker-ports")
        let longAgo = Date().addingTimeInterval(-600)
        for port in 5672...5690 {
            let lock = ports.appendingPathComponent("\(port)")
            try FileManager.default.createDirectory(at: lock, withIntermediateDirectories: true)
            try "\(folder.path)/gone/state\n".write(to: lock.appendingPathComponent("owner"), atomically: false, encoding: .utf8)
            try FileManager.default.setAttributes([.modificationDate: longAgo], ofItemAtPath: lock.path)
        }
        let suffix = String(UUID().uuidString.prefix(4)).lowercased()
        let scripts = ["stalea\(suffix)", "staleb\(suffix)"].map {
            "TMPDIR=\(folder.path) BROKER_INSTANCE=\($0) \(TestBroker.repositoryRoot)/scripts/broker"
        }
        defer {
            for script in scripts { _ = try? TestBroker.shellBlocking(script, ["stop"]) }
        }
        async let first = TestBroker.shell(scripts[0], ["start"])
        async let second = TestBroker.shell(scripts[1], ["start"])
        _ = try await (first, second)

        var urls: [String] = []
        for script in scripts {
            let environment = try await TestBroker.shell(script, ["env"])
            let url = try #require(
                environment.split(separator: "\n").first { $0.hasPrefix("export AMQP_URL=") }
                    .map { String($0.dropFirst("export AMQP_URL=".count)).trimmingCharacters(in: ["'"]) })
            urls.append(url)
        }
        #expect(urls[0] != urls[1], "both brokers took the same port")
        // Each broker runs: the script's own check of its node answers for each.
        for script in scripts {
            _ = try await TestBroker.shell(script, ["ctl", "status"])
        }
    }
}
