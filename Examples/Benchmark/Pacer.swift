import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// W4's schedule: tick *i* is due at start + i / rate. A thread of its own sleeps until each due
/// time on the monotonic clock (as the C client's `poll` timeout does) and resumes the waiting
/// publisher. `Task.sleep` would wake libdispatch's timer thread and a worker thread per message
/// before the publisher's own thread: the benchmark's pacing, not the library.
final class Pacer: Sendable {
    private struct State {
        /// Ticks that came due before the publisher asked for them.
        var due = 0
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    /// Starts the schedule: `count` ticks, `rate` a second, from now.
    init(count: Int, rate: Double) {
        let start = monotonicNanoseconds()
        Thread { [self] in
            for index in 0..<count {
                let due = start + UInt64(Double(index) / rate * 1e9)
                while case let now = monotonicNanoseconds(), now < due {
                    let left = due - now
                    var interval = timespec(tv_sec: Int(left / 1_000_000_000), tv_nsec: Int(left % 1_000_000_000))
                    _ = nanosleep(&interval, nil)
                }
                let waiter = state.withLock { state in
                    guard let waiter = state.waiter else {
                        state.due += 1
                        return nil as CheckedContinuation<Void, Never>?
                    }
                    state.waiter = nil
                    return waiter
                }
                waiter?.resume()
            }
        }.start()
    }

    /// Waits for the next tick (returns at once when it is already due).
    func next() async {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state in
                guard state.due > 0 else {
                    state.waiter = continuation
                    return false
                }
                state.due -= 1
                return true
            }
            if ready { continuation.resume() }
        }
    }
}
