import Foundation
import RabbitMQ

/// A broker of the test's own (`scripts/broker` with `BROKER_INSTANCE`), for tests that alarm,
/// kill or restart a broker without disturbing the shared one the other suites use.
struct ThrowawayBroker: Sendable {
    let instance: String
    let url: String
    /// The Erlang node name (`name@localhost`), for `join_cluster`.
    var node = ""
    /// The Erlang cookie, when the node was started to join a cluster.
    var cookie: String?
    /// The directory of the TLS listener's certificates (see `scripts/make-test-certificates`).
    var tlsDirectory: String?
    /// The TLS listener's port, when there is one.
    var tlsPort: Int?

    private var script: String {
        (cookie.map { "BROKER_COOKIE=\($0) " } ?? "") + (tlsDirectory.map { "BROKER_TLS_DIR=\($0) " } ?? "")
            + "BROKER_INSTANCE=\(instance) \(TestBroker.repositoryRoot)/scripts/broker"
    }

    /// At most two nodes starting at once: a start takes several seconds of CPU, and the suites
    /// that need nodes of their own all begin together (seven nodes, 30 Erlang VMs counting the
    /// CLI tools, were seen at once on two cores).
    private static let starts = CommandSlots(2)

    /// Starts the node and waits until it accepts AMQP (about 10 to 20 s). Nodes started with
    /// the same `cookie` can form a cluster; with `tlsDirectory` the node also listens for TLS.
    static func start(_ name: String, cookie: String? = nil, tlsDirectory: String? = nil) async throws -> ThrowawayBroker {
        let instance = name.filter { $0.isLetter || $0.isNumber } + String(UUID().uuidString.prefix(4)).lowercased()
        var broker = ThrowawayBroker(instance: instance, url: "", cookie: cookie, tlsDirectory: tlsDirectory)
        let script = broker.script
        _ = try await starts.run { try await TestBroker.shell(script, ["start"]) }
        let environment = try await TestBroker.shell(broker.script, ["env"])
        func value(_ name: String) -> String? {
            environment.split(separator: "\n").first { $0.hasPrefix("export \(name)=") }
                .map { String($0.dropFirst("export \(name)=".count)).trimmingCharacters(in: ["'"]) }
        }
        guard let url = value("AMQP_URL") else {
            throw TestBroker.CtlError(message: "no AMQP_URL for broker \(instance)")
        }
        broker = ThrowawayBroker(
            instance: instance, url: url, node: value("RABBITMQ_NODE") ?? "", cookie: cookie, tlsDirectory: tlsDirectory,
            tlsPort: value("AMQPS_PORT").flatMap { Int($0) })
        return broker
    }

    /// The AMQP port the node listens on.
    var port: Int { (try? AMQPConnection.Configuration(url: url).port) ?? 0 }

    /// `kill -9` of the node, keeping its data: a crash.
    func kill() async throws {
        try await TestBroker.shell(script, ["kill"])
    }

    /// Starts a killed node again on its port and data, and waits until it accepts AMQP.
    func revive() async throws {
        _ = try await Self.starts.run { try await TestBroker.shell(script, ["revive"]) }
    }

    /// Starts a node, runs `body` with it, and stops it, whether `body` returns or throws.
    static func with<Result>(
        _ name: String, tlsDirectory: String? = nil, _ body: (ThrowawayBroker) async throws -> Result
    ) async throws -> Result {
        let broker = try await start(name, tlsDirectory: tlsDirectory)
        do {
            let result = try await body(broker)
            await broker.stop()
            return result
        } catch {
            await broker.stop()
            throw error
        }
    }

    /// Runs rabbitmqctl against this node.
    @discardableResult
    func ctl(_ arguments: [String]) async throws -> String {
        try await TestBroker.cliSlots.run { try await TestBroker.shell(script, ["ctl"] + arguments) }
    }

    /// Stops the node and deletes its data.
    func stop() async {
        // `stop` is a rabbitmqctl call.
        _ = try? await TestBroker.cliSlots.run { try await TestBroker.shell(script, ["stop"]) }
    }
}
