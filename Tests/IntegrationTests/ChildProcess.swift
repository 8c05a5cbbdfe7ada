import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A program the test starts, signals and waits for, with its output in a file.
struct ChildProcess: Sendable {
    let pid: pid_t
    let outputPath: String

    /// Starts `executable` with `arguments`; standard output and error go to a temporary file.
    static func start(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> ChildProcess {
        let outputPath = FileManager.default.temporaryDirectory
            .appendingPathComponent("swift-rabbitmq-child-\(UUID().uuidString)").path
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        let argv = [executable] + arguments
        var cArguments = argv.map { strdup($0) } + [nil]
        defer { for argument in cArguments { free(argument) } }
        var merged = ProcessInfo.processInfo.environment
        merged.merge(environment) { _, new in new }
        var cEnvironment = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for entry in cEnvironment { free(entry) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, nil, &cArguments, &cEnvironment)
        guard spawned == 0 else { throw TestBroker.CtlError(message: "could not start \(executable): error \(spawned)") }
        return ChildProcess(pid: pid, outputPath: outputPath)
    }

    /// What it printed so far.
    var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

    /// Waits (bounded) until its output contains `text`.
    func waitForOutput(containing text: String, within limit: Duration) async throws -> Bool {
        let deadline = ContinuousClock.now + limit
        while !output.contains(text), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        return output.contains(text)
    }

    func signal(_ signal: Int32) { kill(pid, signal) }

    /// Blocks until it exits; returns its exit status (128 + signal if a signal ended it).
    func exitStatus() -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    /// Waits for it to exit on a thread of its own (never on one of Swift's few cooperative
    /// threads); returns its exit status.
    func waitForExit() async -> Int32 {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: exitStatus()) }
        }
    }

    /// Deletes the output file.
    func removeOutput() {
        try? FileManager.default.removeItem(atPath: outputPath)
    }
}
