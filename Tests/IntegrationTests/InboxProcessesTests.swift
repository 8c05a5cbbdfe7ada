import Foundation
import GRDB
import RabbitMQEventsSQLite
import Testing

/// The SQLite inbox shared by processes (no broker needed; here for `ChildProcess`, which waits
/// for children on threads of its own and passes their output through files).
@Suite("SQLite inbox shared by processes", .watchdog)
struct InboxProcessesTests {
    /// Eight processes open one new file at the same moment and handle the same 300 ids: every id's
    /// effect is written exactly once, and no process fails on the others' locks.
    @Test func processesSharingOneFileHandleEachIdOnce() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("swift-rabbitmq-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("events.sqlite").path
        // `swift test` builds the program beside this test bundle.
        let program = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("RabbitMQInboxStress").path
        #expect(FileManager.default.isExecutableFile(atPath: program), "\(program)")
        let workers = try (0..<8).map { try ChildProcess.start(program, [path, "worker-\($0)", "300"]) }
        var handled = 0
        for worker in workers {
            let status = await worker.waitForExit()
            #expect(status == 0, "\(worker.output)")
            handled += Int(worker.output.split(separator: " ").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
            worker.removeOutput()
        }
        #expect(handled == 300)
        let store = try SQLiteEventStore(path: path)
        let rows = try await store.database.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM effects") }
        let distinct = try await store.database.read { try Int.fetchOne($0, sql: "SELECT COUNT(DISTINCT message_id) FROM effects") }
        #expect(rows == 300 && distinct == 300)
    }
}
