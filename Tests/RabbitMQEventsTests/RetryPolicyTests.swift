import Testing

@testable import RabbitMQEvents

@Suite("Retry policy: attempts and backoff")
struct RetryPolicyTests {
    @Test func exponentialBackoffUpToTheCeiling() {
        let policy = RetryPolicy(maxAttempts: 5, initialDelay: .milliseconds(100), multiplier: 10, maximumDelay: .seconds(10))
        #expect(policy.nominalDelay(afterFailedAttempt: 1) == .milliseconds(100))
        #expect(policy.nominalDelay(afterFailedAttempt: 2) == .seconds(1))
        #expect(policy.nominalDelay(afterFailedAttempt: 3) == .seconds(10))
        #expect(policy.nominalDelay(afterFailedAttempt: 4) == .seconds(10), "capped at the maximum")
        #expect(policy.nominalDelay(afterFailedAttempt: 5) == nil, "the fifth attempt was the last")
        #expect(policy.nominalDelay(afterFailedAttempt: 0) == nil)
    }

    @Test func noRetryAndTheDefault() {
        #expect(RetryPolicy.none.nominalDelay(afterFailedAttempt: 1) == nil)
        #expect(RetryPolicy.default.maxAttempts == 3)
        #expect(RetryPolicy.default.nominalDelay(afterFailedAttempt: 2) == .seconds(1))
        // A policy of no attempts at all still handles once and dead-letters.
        #expect(RetryPolicy(maxAttempts: 0).nominalDelay(afterFailedAttempt: 1) == nil)
    }

    @Test func jitterSpreadsEachWaitBothWays() {
        let policy = RetryPolicy(maxAttempts: 3, initialDelay: .seconds(1), jitter: 0.2)
        #expect(policy.delay(afterFailedAttempt: 1, waitedSoFar: .zero, random: 0) == .milliseconds(800))
        #expect(policy.delay(afterFailedAttempt: 1, waitedSoFar: .zero, random: 0.5) == .seconds(1))
        let most = policy.delay(afterFailedAttempt: 1, waitedSoFar: .zero, random: 0.999_999)!
        #expect(most > .milliseconds(1199) && most < .milliseconds(1200))
    }

    @Test func oddSettingsStayFiniteAndNonNegative() {
        let policy = RetryPolicy(
            maxAttempts: 4, initialDelay: .seconds(-5), multiplier: .nan, maximumDelay: .seconds(1), jitter: .infinity)
        for attempt in 1...3 {
            let delay = policy.delay(afterFailedAttempt: attempt, waitedSoFar: .zero, random: 0.7)
            #expect(delay == .zero)
        }
    }

    /// A delivery waiting too long would be taken away by the broker's consumer timeout: the
    /// waits of one event never add up to more than the cap.
    @Test func theTotalWaitIsCapped() {
        let policy = RetryPolicy(maxAttempts: 100, initialDelay: .seconds(60), multiplier: 1, maximumDelay: .seconds(60), jitter: 0)
        var waited = Duration.zero
        for attempt in 1..<100 {
            waited += policy.delay(afterFailedAttempt: attempt, waitedSoFar: waited, random: 0.5)!
        }
        #expect(waited == RetryPolicy.maximumTotalDelay)
    }
}
