import Foundation
import Logging

/// A swift-log handler that keeps every record in memory, for tests that check what a
/// connection logs.
struct CapturedLogs: LogHandler {
    struct Record: Sendable {
        let level: Logger.Level
        let message: String
        let metadata: Logger.Metadata
    }

    // @unchecked: `records` is read and written only while holding `lock`.
    final class Storage: @unchecked Sendable {
        private let lock = NSLock()
        private var records: [Record] = []
        func append(_ record: Record) { lock.withLock { records.append(record) } }
        var all: [Record] { lock.withLock { records } }
    }

    let storage: Storage
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    /// A logger that records into `storage`.
    static func logger(_ storage: Storage) -> Logger {
        Logger(label: "test") { _ in CapturedLogs(storage: storage) }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        storage.append(
            Record(level: event.level, message: event.message.description, metadata: metadata.merging(event.metadata ?? [:]) { $1 }))
    }
}
