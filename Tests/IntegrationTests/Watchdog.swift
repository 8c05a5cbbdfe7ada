import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Turns a hang into a failure that explains itself: every integration test runs under this
/// trait, and when one has run longer than the limit (`TEST_WATCHDOG_MINUTES`, default 8; the
/// slowest test takes about two), the process prints each unfinished test with its age and
/// the last thing it said it was waiting for (``note(_:)``), and exits with a failure. A suite
/// that cannot finish fails within minutes instead of running into CI's limit.
struct Watchdog: TestTrait, SuiteTrait, TestScoping {
    var isRecursive: Bool { true }

    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        // Suites are scopes of their tests: only the tests are watched.
        guard !test.isSuite else { return try await function() }
        let id = Self.registry.started(test.name + (testCase?.isParameterized == true ? " (a case)" : ""))
        defer { Self.registry.finished(id) }
        try await Self.$current.withValue(id) { try await function() }
    }

    /// Records what the current test waits for now, printed if the watchdog fires.
    static func note(_ what: @autoclosure () -> String) {
        guard let current else { return }
        registry.note(current, what())
    }

    @TaskLocal private static var current: Int?
    private static let registry = Registry()

    /// The tests running now.
    private final class Registry: @unchecked Sendable {
        // @unchecked: `running` and `nextID` are read and written only while holding `lock`.
        private let lock = NSLock()
        private var running: [Int: (name: String, started: ContinuousClock.Instant, note: String)] = [:]
        private var nextID = 0
        private let limit: Duration

        init() {
            let minutes = ProcessInfo.processInfo.environment["TEST_WATCHDOG_MINUTES"].flatMap(Int.init) ?? 8
            limit = .seconds(60 * max(minutes, 1))
            Thread.detachNewThread { [self] in watch() }
        }

        func started(_ name: String) -> Int {
            lock.withLock {
                nextID += 1
                running[nextID] = (name, .now, "running")
                return nextID
            }
        }

        func finished(_ id: Int) { lock.withLock { _ = running.removeValue(forKey: id) } }

        func note(_ id: Int, _ what: String) { lock.withLock { running[id]?.note = what } }

        private func watch() {
            while true {
                Thread.sleep(forTimeInterval: 5)
                let now = ContinuousClock.now
                let overdue = lock.withLock { running.values.contains { $0.started.duration(to: now) > limit } }
                guard overdue else { continue }
                var report = "WATCHDOG: a test ran longer than \(limit); unfinished tests:\n"
                let tests = lock.withLock { running.values.sorted { $0.started < $1.started } }
                for test in tests {
                    report += "  \(test.name): running for \(test.started.duration(to: now)); last: \(test.note)\n"
                }
                FileHandle.standardError.write(Data(report.utf8))
                print(report)
                exit(1)
            }
        }
    }
}

extension Trait where Self == Watchdog {
    /// Fails the run with a report of the unfinished tests when a test hangs (see ``Watchdog``).
    static var watchdog: Watchdog { Watchdog() }
}
