import DequeModule
import RabbitMQ

/// An ``EventInbox`` in memory, for handlers without a database: it remembers the last
/// ``capacity`` message ids of each consumer group and runs the work of one event at a time
/// (under its lock: keep it short). It de-duplicates redeliveries within one process's life; a
/// restart, or another replica, starts with nothing (use a database store for those).
///
/// Its transaction is `Void`: there is nothing to roll back, so work that throws after a side
/// effect leaves that effect, and the id is not recorded.
public final class InMemoryEventInbox: EventInbox {
    /// How many ids each consumer group remembers; the oldest are forgotten first.
    public let capacity: Int

    private struct Group {
        var ids: Set<String> = []
        var order: Deque<String> = []
    }

    private let groups = Locked<[String: Group]>([:])

    /// An inbox remembering up to `capacity` ids per consumer group (at least 1).
    public init(capacity: Int = 100_000) {
        self.capacity = max(capacity, 1)
    }

    public func once<Result: Sendable>(
        messageID: String, consumerGroup: String, _ work: @Sendable (()) throws -> Result
    ) async throws -> InboxOutcome<Result> {
        // Checked, run and recorded under the lock: two deliveries of one id never both run.
        try groups.withLock { groups in
            if groups[consumerGroup]?.ids.contains(messageID) == true { return .duplicate }
            let result = try work(())
            // Changed in place: a copy taken out of the dictionary would share its storage with
            // the one still in it, so the first change would copy every id kept.
            Self.record(messageID, in: &groups[consumerGroup, default: Group()], capacity: capacity)
            return .handled(result)
        }
    }

    private static func record(_ messageID: String, in group: inout Group, capacity: Int) {
        group.ids.insert(messageID)
        group.order.append(messageID)
        while group.order.count > capacity, let oldest = group.order.popFirst() { group.ids.remove(oldest) }
    }

    /// Whether `messageID` is recorded for `consumerGroup`.
    public func contains(_ messageID: String, consumerGroup: String) -> Bool {
        groups.withLock { $0[consumerGroup]?.ids.contains(messageID) == true }
    }
}
