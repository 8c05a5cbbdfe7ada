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

    /// A daemon's inbox records every event it handles, millions over its life: recording one
    /// more must not copy the ids already kept. (It did: each record copied the whole group,
    /// so 200,000 records took minutes instead of a fraction of a second.) The limit only
    /// catches that; the test needs far less on any machine.
    @Test(.timeLimit(.minutes(1))) func recordingStaysCheapBeyondTheCapacity() async throws {
        let inbox = InMemoryEventInbox(capacity: 100_000)
        for index in 0..<200_000 {
            try Task.checkCancellation()  // ends at the limit instead of running on
            let outcome = try await inbox.once(messageID: "m\(index)", consumerGroup: "g") { () }
            #expect(outcome.wasHandled, "m\(index)")
        }
        #expect(!inbox.contains("m99999", consumerGroup: "g"))
        #expect(inbox.contains("m100000", consumerGroup: "g"))
        #expect(inbox.contains("m199999", consumerGroup: "g"))
        #expect(try await !inbox.once(messageID: "m199999", consumerGroup: "g") { () }.wasHandled)
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
