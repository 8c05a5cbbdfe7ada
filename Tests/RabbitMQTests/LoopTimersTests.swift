import Testing

@testable import RabbitMQ

extension LoopTimers {
    /// Adds a sleep under a new identifier, as the executor does in two steps.
    fileprivate mutating func add(_ waiter: Waiter, deadline: ContinuousClock.Instant) -> (id: Int, isEarliest: Bool) {
        let id = reserveID()
        return (id, add(waiter, deadline: deadline, id: id))
    }
}

@Suite("Loop timers")
struct LoopTimersTests {
    let start = ContinuousClock.now

    @Test func sleepsWakeEarliestFirstAndEqualDeadlinesInArrivalOrder() {
        var timers = LoopTimers<String>()
        #expect(timers.earliest == nil)
        #expect(timers.add("c", deadline: start + .milliseconds(30)).isEarliest)
        #expect(timers.add("a", deadline: start + .milliseconds(10)).isEarliest)
        #expect(!timers.add("b1", deadline: start + .milliseconds(20)).isEarliest)
        #expect(!timers.add("b2", deadline: start + .milliseconds(20)).isEarliest)
        #expect(!timers.add("a2", deadline: start + .milliseconds(10)).isEarliest, "an equal deadline is not earlier")
        #expect(timers.earliest == start + .milliseconds(10))

        #expect(timers.takeDue(at: start).isEmpty)
        #expect(timers.takeDue(at: start + .milliseconds(10)) == ["a", "a2"], "due at its deadline, not only after")
        #expect(timers.takeDue(at: start + .milliseconds(25)) == ["b1", "b2"])
        #expect(timers.earliest == start + .milliseconds(30))
        #expect(timers.takeDue(at: start + .seconds(1)) == ["c"])
        #expect(timers.isEmpty)
        #expect(timers.earliest == nil)
    }

    @Test func aCancelledSleepIsTakenOutOnce() {
        var timers = LoopTimers<String>()
        let first = timers.add("first", deadline: start + .milliseconds(10)).id
        let second = timers.add("second", deadline: start + .milliseconds(20)).id
        #expect(first != second)
        #expect(timers.remove(id: first) == "first")
        #expect(timers.remove(id: first) == nil, "already taken out")
        #expect(timers.earliest == start + .milliseconds(20))
        #expect(timers.takeDue(at: start + .milliseconds(20)) == ["second"])
        #expect(timers.remove(id: second) == nil, "woke already: nothing left to cancel")
    }

    @Test func everySleepIsTakenWhenTheThreadEnds() {
        var timers = LoopTimers<Int>()
        for index in 0..<5 { _ = timers.add(index, deadline: start + .seconds(5 - index)) }
        #expect(timers.takeAll() == [4, 3, 2, 1, 0])
        #expect(timers.isEmpty)
    }
}
