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
    ///
    /// Both ask for a port outside the range the script picks from (so nothing else in the suite
    /// can want it), and the stale reservation lives in a reservation folder of the test's own.
    @Test func brokersStartingTogetherTakeAStaleReservationOverOnlyOnce() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("broker-ports-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let port = 5699
        // Reserved ten minutes ago by a broker whose state file is gone: stale.
        let lock = folder.appendingPathComponent("swift-rabbitmq-broker-ports/\(port)")
        try FileManager.default.createDirectory(at: lock, withIntermediateDirectories: true)
        try "\(folder.path)/gone/state\n".write(to: lock.appendingPathComponent("owner"), atomically: false, encoding: .utf8)
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-600)], ofItemAtPath: lock.path)

        let suffix = String(UUID().uuidString.prefix(4)).lowercased()
        let scripts = ["stalea\(suffix)", "staleb\(suffix)"].map {
            "TMPDIR=\(folder.path) BROKER_PORT=\(port) BROKER_INSTANCE=\($0) \(TestBroker.repositoryRoot)/scripts/broker"
        }
        defer {
            for script in scripts { _ = try? TestBroker.shellBlocking(script, ["stop"]) }
        }
        @Sendable func start(_ script: String) async -> Result<String, any Error> {
            do { return .success(try await TestBroker.shell(script, ["start"])) } catch { return .failure(error) }
        }
        async let first = start(scripts[0])
        async let second = start(scripts[1])
        let outcomes = await [first, second]
        let started = scripts.indices.filter { if case .success = outcomes[$0] { true } else { false } }
        #expect(started.count == 1, "both brokers started on port \(port), or neither: \(outcomes)")
        // The one that started runs.
        for index in started {
            _ = try await TestBroker.shell(scripts[index], ["ctl", "status"])
        }
    }
}
