#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Bounds what the heartbeat check inside the event loop cannot: a connection's thread stuck
/// inside librabbitmq, which waits for room in the socket without a deadline when the peer stops
/// reading (a hung broker, a stalled network). While stuck, the loop checks no timers.
///
/// One thread for the process watches every connection. It sleeps until the earliest moment a
/// watched connection could count as stalled (its last progress plus its limit: two heartbeat
/// intervals, and at least 5 s), or until a watch changes, so an idle process is not woken for
/// it. When a connection's loop has made no progress for longer than its limit, it shuts the
/// socket down: the stuck write fails, and the connection is lost (and recovers) like any other.
/// `shutdown` is the only thing done to the socket from this thread; librabbitmq's state is never
/// touched.
final class StallWatchdog: Sendable {
    static let shared = StallWatchdog()

    /// The watched connections' liveness records, by registration. Not weak references to the
    /// executors: a weak reference gives its object a side table, and every retain and release
    /// of the executor (several per message) would then take the runtime's slow path.
    private let entries = Locked<(next: Int, watched: [Int: Locked<ConnectionExecutor.Liveness>])>((0, [:]))
    /// Read end (polled by the watchdog's thread) and write end of its wake-up pipe.
    private let wakeReadFD: Int32
    private let wakeWriteFD: Int32

    private init() {
        (wakeReadFD, wakeWriteFD) = makeWakeUpPipe()
        startThread(name: "amqp-stall-watchdog") { [self] in
            var nextCheck: ContinuousClock.Instant?
            while true {
                var wakeUp = pollfd(fd: wakeReadFD, events: Int16(POLLIN), revents: 0)
                if poll(&wakeUp, 1, nextCheck.map { pollTimeout(until: $0) } ?? -1) > 0 {
                    var bytes = [UInt8](repeating: 0, count: 64)
                    while read(wakeReadFD, &bytes, bytes.count) > 0 {}
                }
                let now = ContinuousClock.now
                let watched = entries.withLock { Array($0.watched.values) }
                nextCheck = watched.compactMap { Self.shutDownIfStalled($0, now: now) }.min()
            }
        }
    }

    /// Watches the connection whose owner thread keeps `liveness` (see
    /// ``ConnectionExecutor/watch(socket:limit:)``) until ``unregister(_:)`` with the returned
    /// registration.
    func register(_ liveness: Locked<ConnectionExecutor.Liveness>) -> Int {
        entries.withLock { entries in
            entries.next += 1
            entries.watched[entries.next] = liveness
            return entries.next
        }
    }

    /// Stops watching a connection: its owner thread is done with it.
    func unregister(_ registration: Int) {
        entries.withLock { _ = $0.watched.removeValue(forKey: registration) }
    }

    /// A watch changed: the watchdog looks again and computes its next wake-up.
    func watchChanged() {
        var byte: UInt8 = 1
        _ = write(wakeWriteFD, &byte, 1)
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
        if limit > .zero { StallWatchdog.shared.watchChanged() }
    }

    /// The owner thread's loop went round at `now`: it is not stuck.
    func markProgress(at now: ContinuousClock.Instant) {
        liveness.withLock { $0.lastProgress = now }
    }

    /// Whether the watchdog shut the socket down (cleared by reading it).
    func takeStalled() -> Bool {
        liveness.withLock { liveness in
            defer { liveness.stalled = false }
            return liveness.stalled
        }
    }

}

extension StallWatchdog {
    /// Called by the watchdog's thread: shuts the socket down if the loop made no progress for
    /// longer than the limit. Returns when to look again (the moment the connection would count
    /// as stalled without further progress), or `nil` when it is not watched.
    static func shutDownIfStalled(
        _ liveness: Locked<ConnectionExecutor.Liveness>, now: ContinuousClock.Instant
    ) -> ContinuousClock.Instant? {
        liveness.withLock { liveness in
            guard liveness.socket >= 0, liveness.limit > .zero, !liveness.stalled else { return nil }
            let deadline = liveness.lastProgress + liveness.limit
            guard now > deadline else { return deadline }
            // Under the lock: the owner cannot destroy the connection (closing this descriptor,
            // which another socket could then reuse) in between.
            liveness.stalled = true
            _ = shutdown(liveness.socket, Int32(SHUT_RDWR))
            return nil
        }
    }
}
