import Foundation

/// A broker of the test's own (`scripts/broker` with `BROKER_INSTANCE`), for tests that alarm,
/// kill or restart a broker without disturbing the shared one the other suites use.
struct ThrowawayBroker: Sendable {
    let instance: String
    let url: String

    private var script: String { "BROKER_INSTANCE=\(instance) \(TestBroker.repositoryRoot)/scripts/broker" }

    /// Starts the node and waits until it accepts AMQP (about 10 to 20 s).
    static func start(_ name: String) async throws -> ThrowawayBroker {
        let instance = name.filter { $0.isLetter || $0.isNumber } + String(UUID().uuidString.prefix(4)).lowercased()
        var broker = ThrowawayBroker(instance: instance, url: "")
        try await TestBroker.shell(broker.script, ["start"])
        let environment = try await TestBroker.shell(broker.script, ["env"])
        guard let line = environment.split(separator: "\n").first(where: { $0.hasPrefix("export AMQP_URL=") }) else {
            throw TestBroker.CtlError(message: "no AMQP_URL for broker \(instance)")
        }
        broker = ThrowawayBroker(
            instance: instance, url: String(line.dropFirst("export AMQP_URL=".count)).trimmingCharacters(in: ["'"]))
        return broker
    }

    /// Starts a node, runs `body` with it, and stops it, whether `body` returns or throws.
    static func with<Result>(_ name: String, _ body: (ThrowawayBroker) async throws -> Result) async throws -> Result {
        let broker = try await start(name)
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
        try await TestBroker.shell(script, ["ctl"] + arguments)
    }

    /// Stops the node and deletes its data.
    func stop() async {
        _ = try? await TestBroker.shell(script, ["stop"])
    }
}
