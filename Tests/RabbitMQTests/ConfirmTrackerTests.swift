import Foundation
import Testing

@testable import RabbitMQ

/// The confirm tracker's book-keeping, without a broker: numbering, settling, and matching a
/// `basic.return` to its publish.
@Suite("Confirm tracker")
struct ConfirmTrackerTests {
    private func publish(_ headers: FieldTable? = nil, messageID: String? = nil) -> PublishCommand {
        PublishCommand(
            key: ChannelKey(number: 1, id: 1, status: ChannelStatus(), frameMax: 131_072), exchange: "e",
            routingKey: "k", mandatory: true, properties: BasicProperties(headers: headers, messageID: messageID),
            body: Array("same".utf8), confirmation: PublishConfirmation())
    }

    private func key(_ publish: PublishCommand) -> ConfirmTracker.ReturnKey {
        ConfirmTracker.ReturnKey(
            exchange: publish.exchange, routingKey: publish.routingKey, bodySize: publish.body.count,
            messageID: publish.properties.messageID, headers: publish.properties.headers)
    }

    private let returned = AMQPError(.publishReturned, "returned")

    @Test func numbersFromOneAndSettlesSingleAndMultipleConfirms() throws {
        let tracker = ConfirmTracker(keepsPublishes: false)
        let publishes = (0..<5).map { _ in publish() }
        for publish in publishes { tracker.record(publish, confirmation: publish.confirmation!, returnKey: nil) }
        #expect(publishes.map { $0.confirmation!.sequenceNumber } == [1, 2, 3, 4, 5])
        #expect(tracker.confirm(tag: 2, multiple: false, nacked: false) == 1)
        #expect(tracker.confirm(tag: 4, multiple: true, nacked: true) == 3, "1, 3 and 4")
        #expect(tracker.confirm(tag: 2, multiple: false, nacked: false) == 0, "already settled")
        let verdicts = publishes.map { $0.confirmation!.result.map { (try? $0.get()) != nil } }
        #expect(verdicts == [false, true, false, false, nil])
    }

    @Test func aReturnFailsThePublishWhoseHeadersItCarries() throws {
        let tracker = ConfirmTracker(keepsPublishes: false)
        let eu = publish(["region": "eu"])
        let us = publish(["region": "us"])
        for publish in [eu, us] { tracker.record(publish, confirmation: publish.confirmation!, returnKey: key(publish)) }
        // The broker returns the second one: its headers say so, although the first is older.
        #expect(tracker.markReturned(key(us), error: returned))
        #expect(tracker.confirm(tag: 2, multiple: true, nacked: false) == 2)
        #expect((try? eu.confirmation!.result?.get()) != nil)
        #expect(us.confirmation!.result.map { if case .failure(let error) = $0 { error.code == .publishReturned } else { false } } == true)
    }

    @Test func headersMatchAsTheyComeBackFromTheBroker() {
        let second = AMQPTimestamp(secondsSince1970: 1_790_000_000)
        let published: FieldValue = [
            "big": .uint64(UInt64(Int64.max)), "small": .uint8(7), "when": .timestamp(second),
            "nested": ["list": [.int16(1), "two"]],
        ]
        let cameBack: FieldValue = [
            "big": .int64(.max), "small": .uint8(7), "when": .timestamp(second),
            "nested": ["list": [.int16(1), "two"]],
        ]
        #expect(published.routesAlike(cameBack))
        #expect(!published.routesAlike(["big": .int64(.max)]))
        // RabbitMQ 4 re-encodes headers: sorted by key, the first of duplicate keys kept.
        #expect(FieldValue.table(["tenant": "eu", "region": "x", "tenant": "us"]).routesAlike(["region": "x", "tenant": "eu"]))
        #expect(!FieldValue.table(["tenant": "eu", "tenant": "us"]).routesAlike(["tenant": "us"]))
        #expect(!FieldValue.string("eu").routesAlike(.string("us")))
    }

    @Test func withoutMatchingHeadersTheOldestAlikePublishIsReturned() {
        let tracker = ConfirmTracker(keepsPublishes: false)
        let first = publish(["region": "eu"])
        let second = publish(["region": "eu"])
        for publish in [first, second] { tracker.record(publish, confirmation: publish.confirmation!, returnKey: key(publish)) }
        // Headers that match neither (changed by a plugin, say): the oldest alike one.
        #expect(tracker.markReturned(key(publish(["region": "mars"])), error: returned))
        #expect(!tracker.markReturned(key(publish(messageID: "other")), error: returned), "no publish is alike")
        _ = tracker.confirm(tag: 2, multiple: true, nacked: false)
        #expect((try? first.confirmation!.result?.get()) == nil)
        #expect((try? second.confirmation!.result?.get()) != nil)
    }
}

@Suite("Delivery tags across recoveries")
struct DeliveryTagTests {
    @Test func tagsGrowAcrossGenerationsAndOldOnesAreStale() throws {
        let record = ChannelRecord(number: 1, id: 1)
        #expect((1...50).map { record.applicationTag($0) }.last == 50)
        #expect(record.applicationTag(50) == nil, "not above the previous tag")
        #expect(record.applicationTag(51 + ChannelRecord.largestTagStep) == nil, "too far beyond it")
        for tag in UInt64(1)...50 { record.status.deliveryOutstanding(tag) }
        // Lost and recovered: the broker's tags start at 1 again.
        record.tagOffset = record.highestTag
        let generation = record.status.startNewGeneration(tagsAbove: record.highestTag)
        let newTag = try #require(record.applicationTag(1))
        #expect(newTag == 51)
        #expect(record.brokerTag(newTag) == 1)
        #expect(record.brokerTag(0) == 0, "0 still means every outstanding delivery")
        record.status.deliveryOutstanding(newTag)
        #expect(throws: AMQPError.self) {
            try record.status.takeOutstanding(50, multiple: true, generation: generation, channel: 1)
        }
        let stale: Void? = try? record.status.takeOutstanding(30, multiple: true, generation: generation, channel: 1)
        #expect(stale == nil)
        try record.status.takeOutstanding(51, multiple: true, generation: generation, channel: 1)
    }
}
