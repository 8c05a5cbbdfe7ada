import RabbitMQ
import Testing

@testable import RabbitMQEvents

@Suite("Topology retry: which declaration failures are tried again, and when")
struct TopologyRetryTests {
    @Test func onlyTheBrokersOwnFailureIsTriedAgain() {
        let notFormed = AMQPError(
            .connectionClosed, "the broker closed the connection", replyCode: 541,
            replyText: "INTERNAL_ERROR - Cannot declare quorum queue 'q' in vhost '/' on node 'n' with leader on node 'n': cluster_not_formed")
        #expect(TopologyRetry.isTransient(notFormed))
        let differs = AMQPError(
            .preconditionFailed, "the broker closed the channel", replyCode: 406,
            replyText: "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'q'")
        #expect(!TopologyRetry.isTransient(differs))
        #expect(!TopologyRetry.isTransient(AMQPError(.accessRefused, "refused", replyCode: 403)))
        #expect(!TopologyRetry.isTransient(AMQPError(.connectionFailed, "no broker")))
        #expect(!TopologyRetry.isTransient(CancellationError()))
    }

    @Test func waitsDoubleUpToTheCeiling() {
        let retry = TopologyRetry()
        #expect(retry.delay(afterRefusals: 1) == .seconds(1))
        #expect(retry.delay(afterRefusals: 2) == .seconds(2))
        #expect(retry.delay(afterRefusals: 5) == .seconds(16))
        #expect(retry.delay(afterRefusals: 6) == .seconds(30))
        #expect(retry.delay(afterRefusals: 1_000_000) == .seconds(30), "no overflow however long it goes on")
        #expect(retry.delay(afterRefusals: 0) == .seconds(1))
        #expect(TopologyRetry(initialDelay: .seconds(-1)).delay(afterRefusals: 3) == .zero)
    }
}
