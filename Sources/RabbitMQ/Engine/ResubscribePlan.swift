/// The steps that start a channel's consumers again after a recovery.
///
/// Per-consumer prefetch (`basic.qos` with `global` off) applies to the consumers started after
/// it, so each consumer must be started again under the prefetch it was first started with,
/// and the channel's last setting set back at the end for consumers the application starts
/// later. A value computed from the records, tested without a broker; the connection performs
/// its steps in order.
struct ResubscribePlan: Equatable {
    enum Step: Equatable {
        case setPrefetch(ChannelRecord.Prefetch)
        case consume(tag: String)
    }

    let steps: [Step]

    /// - Parameters:
    ///   - consumers: Each consumer's tag and the per-consumer prefetch it was started with
    ///     (`nil`: none), in the order to start them.
    ///   - channelPrefetch: The channel's last per-consumer prefetch, which reopening the
    ///     channel applied first (`nil`: none).
    init(consumers: [(tag: String, prefetch: ChannelRecord.Prefetch?)], channelPrefetch: ChannelRecord.Prefetch?) {
        let unlimited = ChannelRecord.Prefetch(count: 0, size: 0, global: false)
        let last = channelPrefetch ?? unlimited
        var applied = last
        var steps: [Step] = []
        for consumer in consumers {
            let wanted = consumer.prefetch ?? unlimited
            if wanted != applied {
                steps.append(.setPrefetch(wanted))
                applied = wanted
            }
            steps.append(.consume(tag: consumer.tag))
        }
        if applied != last { steps.append(.setPrefetch(last)) }
        self.steps = steps
    }
}
