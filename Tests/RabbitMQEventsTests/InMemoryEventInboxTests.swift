import Testing

@testable import RabbitMQEvents

@Suite("In-memory inbox")
struct InMemoryEventInboxTests {
    struct Refused: Error {}

    @Test func anIdRunsOncePerGroup() async throws {
        let inbox = InMemoryEventInbox()
        #expect(try await inbox.once(messageID: "m1", consumerGroup: "inventory") { 1 } == .handled(1))
        #expect(try await inbox.once(messageID: "m1", consumerGroup: "inventory") { 2 } == .duplicate)
        // Another group has its own record.
        #expect(try await inbox.once(messageID: "m1", consumerGroup: "billing") { 3 } == .handled(3))
    }

    @Test func failedWorkIsNotRecorded() async throws {
        let inbox = InMemoryEventInbox()
        await #expect(throws: Refused.self) {
            _ = try await inbox.once(messageID: "m1", consumerGroup: "g") { () throws -> Int in throw Refused() }
        }
        #expect(!inbox.contains("m1", consumerGroup: "g"))
        #expect(try await inbox.once(messageID: "m1", consumerGroup: "g") { 1 } == .handled(1))
    }

    @Test func theOldestIdsAreForgottenBeyondTheCapacity() async throws {
        let inbox = InMemoryEventInbox(capacity: 3)
        for id in ["a", "b", "c", "d"] { _ = try await inbox.once(messageID: id, consumerGroup: "g") { () } }
        #expect(!inbox.contains("a", consumerGroup: "g"))
        #expect(["b", "c", "d"].allSatisfy { inbox.contains($0, consumerGroup: "g") })
    }

    /// Many tasks deliver the same ids at once: each id's work runs exactly once.
    @Test func concurrentDeliveriesOfOneIdRunItOnce() async throws {
        let inbox = InMemoryEventInbox()
        let handled = await withTaskGroup(of: Int.self) { group in
            for attempt in 0..<400 {
                group.addTask {
                    (try? await inbox.once(messageID: "m\(attempt % 40)", consumerGroup: "g") { () })?.wasHandled == true ? 1 : 0
                }
            }
            return await group.reduce(0, +)
        }
        #expect(handled == 40)
    }

    @Test func anEventWithoutAMessageIDCannotGoThroughAnInbox() async throws {
        let inbox = InMemoryEventInbox()
        let context = EventContext(
            messageID: nil, eventType: "T", routingKey: "r", redelivered: false, attempt: 1, consumerGroup: "g",
            partitionKey: nil, headers: [:], properties: .init())
        await #expect(throws: MissingMessageID.self) { _ = try await inbox.once(context) { () } }
    }
}
