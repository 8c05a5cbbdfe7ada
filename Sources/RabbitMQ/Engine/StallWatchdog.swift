#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Bounds what the heartbeat check inside the event loop cannot: a connection's thread stuck
/// inside librabbitmq, which waits for room in the socket without a deadline when the peer stops
/// reading (a hung broker, a stalled network). While stuck, the loop checks no timers.
///
/// One thread for the process looks at every watched connection four times a second. When a
/// connection's loop has made no progress for longer than its limit (two heartbeat intervals,
/// and at least 5 s), it shuts the socket down: the stuck write fails, and the connection is
/// lost (and recovers) like any other. `shutdown` is the only thing done to the socket from
/// this thread; librabbitmq's state is never touched.
final class StallWatchdog: Sendable {
    static let shared = StallWatchdog()

    private final class Entry: Sendable {
        weak let executor: ConnectionExecutor?
        init(_ executor: ConnectionExecutor) { self.executor = executor }
    }

    private let entries = Locked<[Entry]>([])

    private init() {
        startThread(name: "amqp-stall-watchdog") { [self] in
            while true {
                usleep(250_000)
                let now = ContinuousClock.now
                let executors = entries.withLock { entries in
                    entries.removeAll { $0.executor == nil }
                    return entries.compactMap(\.executor)
                }
                for executor in executors { executor.shutDownIfStalled(now: now) }
            }
        }
    }

    /// Watches `executor`'s connection from now on (see ``ConnectionExecutor/watch(socket:limit:)``).
    func register(_ executor: ConnectionExecutor) {
        entries.withLock { $0.append(Entry(executor)) }
    }
}

extension ConnectionExecutor {
    /// What the stall watchdog knows of one connection.
    struct Liveness {
        /// The socket of the current C connection; -1 while there is none.
        var socket: Int32 = -1
        /// Longest time without progress; `.zero` turns the watch off (no heartbeats).
        var limit: Duration = .zero
        var lastProgress = ContinuousClock.now
        /// The watchdog shut the socket down: the next failure says why.
        var stalled = false
    }

    /// Watches `socket` (-1: none any more) with `limit`. Called by the owner thread whenever its
    /// C connection changes, before an old one is destroyed (which closes its socket).
    func watch(socket: Int32, limit: Duration) {
        liveness.withLock {
            $0.socket = socket
            $0.limit = limit
            $0.lastProgress = .now
            $0.stalled = false
        }
    }

    /// The owner thread's loop went round: it is not stuck.
    func markProgress() {
        liveness.withLock { $0.lastProgress = .now }
    }

    /// Whether the watchdog shut the socket down (cleared by reading it).
    func takeStalled() -> Bool {
        liveness.withLock { liveness in
            defer { liveness.stalled = false }
            return liveness.stalled
        }
    }

    /// Called by the watchdog's thread.
    func shutDownIfStalled(now: ContinuousClock.Instant) {
        liveness.withLock { liveness in
            guard liveness.socket >= 0, liveness.limit > .zero, !liveness.stalled,
                liveness.lastProgress.duration(to: now) > liveness.limit
            else { return }
            // Under the lock: the owner cannot destroy the connection (closing this descriptor,
            // which another socket could then reuse) in between.
            liveness.stalled = true
            _ = shutdown(liveness.socket, Int32(SHUT_RDWR))
        }
    }
}
