import Testing

@testable import RabbitMQ

/// How long the connection's loop sleeps without news from the socket or a job.
@Suite("Loop ticks")
struct LoopTicksTests {
    @Test func idleWithHeartbeatsReadsFourTimesAPeriod() {
        #expect(LoopTicks(heartbeat: .seconds(60)).interval(timed: false) == .seconds(15))
        #expect(LoopTicks(heartbeat: .seconds(2)).interval(timed: false) == .milliseconds(500))
    }

    @Test func idleWithoutHeartbeatsSleepsTheIdleLimit() {
        #expect(LoopTicks(heartbeat: .zero).interval(timed: false) == LoopTicks.idle)
        #expect(LoopTicks(heartbeat: .seconds(600)).interval(timed: false) == LoopTicks.idle)
    }

    @Test func deadlinesAreCheckedEverySecondOrMoreOften() {
        #expect(LoopTicks(heartbeat: .seconds(60)).interval(timed: true) == .seconds(1))
        #expect(LoopTicks(heartbeat: .zero).interval(timed: true) == .seconds(1))
        #expect(LoopTicks(heartbeat: .seconds(2)).interval(timed: true) == .milliseconds(500))
    }
}
