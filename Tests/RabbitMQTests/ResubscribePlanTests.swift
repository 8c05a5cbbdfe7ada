import Testing

@testable import RabbitMQ

/// Which `basic.qos` and `basic.consume` recovery sends for a channel's consumers.
@Suite("Resubscribe plan")
struct ResubscribePlanTests {
    private func prefetch(_ count: UInt16) -> ChannelRecord.Prefetch {
        ChannelRecord.Prefetch(count: count, size: 0, global: false)
    }

    @Test func consumersUnderTheChannelsPrefetchNeedNoQos() {
        let plan = ResubscribePlan(consumers: [("a", prefetch(5)), ("b", prefetch(5))], channelPrefetch: prefetch(5))
        #expect(plan.steps == [.consume(tag: "a"), .consume(tag: "b")])
    }

    @Test func eachConsumerGetsItsOwnThenTheChannelsIsSetBack() {
        let plan = ResubscribePlan(
            consumers: [("a", prefetch(3)), ("b", prefetch(7)), ("c", prefetch(7)), ("d", nil)],
            channelPrefetch: prefetch(7))
        #expect(
            plan.steps == [
                .setPrefetch(prefetch(3)), .consume(tag: "a"), .setPrefetch(prefetch(7)), .consume(tag: "b"),
                .consume(tag: "c"), .setPrefetch(prefetch(0)), .consume(tag: "d"), .setPrefetch(prefetch(7)),
            ])
    }

    @Test func noPrefetchAnywhereIsUnlimitedThroughout() {
        let plan = ResubscribePlan(consumers: [("a", nil)], channelPrefetch: nil)
        #expect(plan.steps == [.consume(tag: "a")])
        let set = ResubscribePlan(consumers: [("a", prefetch(2))], channelPrefetch: nil)
        #expect(set.steps == [.setPrefetch(prefetch(2)), .consume(tag: "a"), .setPrefetch(prefetch(0))])
    }
}
