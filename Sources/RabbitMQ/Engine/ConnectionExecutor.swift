import DequeModule
import Synchronization
import class Foundation.Thread

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The serial executor of one connection, and the only way onto its thread.
///
/// librabbitmq has no locks: a connection's socket, buffers, pools and every pointer it hands out
/// belong to one thread. That thread runs the connection's event loop (``ConnectionLoop``), and
/// between two polls it runs the jobs of the connection's actor (``ConnectionCore``), whose
/// executor this is. So the actor's isolation *is* confinement to the owner thread, checked by
/// the compiler; ``checkIsolated()`` checks it again at run time.
///
/// Jobs arrive from any thread into a locked queue. The loop sleeps in `poll()` on the socket and
/// the read end of a wake-up pipe; a producer writes one byte only when the loop is (about to be)
/// asleep, so a burst of jobs costs one wake-up.
///
/// The same queue carries ``ConnectionCommand``s: publishes and acknowledgements that the caller
/// hands over without waiting for the connection thread (the hop there and back is what a
/// message would otherwise cost). One queue keeps them in order with the actor's jobs.
///
/// The queue also takes the jobs of application tasks that prefer the connection's thread
/// (``ConnectionTaskExecutor``, ``AMQPConnection/taskExecutor``): they run between turns of the
/// loop like the actor's, so a consumer or publisher loop there hands deliveries,
/// acknowledgements and publishes over without a thread switch or a wake-up.
final class ConnectionExecutor: SerialExecutor {
    /// An actor job, a task's job or a command, in arrival order.
    enum Work {
        case job(UnownedJob)
        case taskJob(UnownedJob)
        case command(ConnectionCommand)
    }

    private struct State {
        var jobs: Deque<Work> = []
        /// An empty queue whose buffer the next ``runQueuedJobs(taskExecutor:perform:)`` swaps in.
        var spare: Deque<Work> = []
        /// The loop is in (or entering) `poll()` and must be woken for new jobs.
        var sleeping = false
        /// The owner thread asked to stop once its connection is torn down.
        var stopRequested = false
        /// The owner thread has exited; late jobs go to a short-lived drainer thread.
        var ownerExited = false
        var drainerRunning = false
        /// Tasks sleeping on the loop's own timeout (``sleep(until:)``).
        var timers = LoopTimers<UnsafeContinuation<Void, any Error>>()
    }

    private let state = Locked(State())
    /// The owner thread's identifier (``currentThreadID()``), 0 when none. An atomic rather than
    /// a field under the lock: the runtime asks whether the current thread is the owner several
    /// times per message (every `assumeIsolated` from the loop's own code). Relaxed ordering is
    /// enough: a thread only ever compares it with its own identifier, which only that thread
    /// stores (and always reads back, in program order); any other value it may see, however
    /// stale, is rightly not its own. An owner clears it before it exits, so an identifier reused
    /// by a later thread is never found there.
    private let owner = Atomic<UInt>(0)
    /// For the ``StallWatchdog``: the socket, and when the loop last went round.
    let liveness = Locked(Liveness())
    /// Read end (polled by the loop) and write end of the wake-up pipe; both non-blocking.
    let wakeReadFD: Int32
    private let wakeWriteFD: Int32

    init() {
        (wakeReadFD, wakeWriteFD) = makeWakeUpPipe()
    }

    deinit {
        close(wakeReadFD)
        close(wakeWriteFD)
    }

    // MARK: SerialExecutor

    func enqueue(_ job: consuming ExecutorJob) {
        enqueue(.job(UnownedJob(job)))
    }

    /// Queues a job of a task that prefers the connection's thread (see ``ConnectionTaskExecutor``).
    func enqueueTaskJob(_ job: UnownedJob) {
        enqueue(.taskJob(job))
    }

    /// Hands a command to the connection thread; it runs in order with the actor's jobs.
    func enqueue(_ command: ConnectionCommand) {
        enqueue(.command(command))
    }

    private func enqueue(_ work: Work) {
        enum Action { case none, wake, startDrainer }
        let action: Action = state.withLock { state in
            state.jobs.append(work)
            if state.ownerExited {
                if state.drainerRunning { return .none }
                state.drainerRunning = true
                return .startDrainer
            }
            if state.sleeping {
                state.sleeping = false
                return .wake
            }
            return .none
        }
        switch action {
        case .none: break
        case .wake: wake()
        case .startDrainer: startDrainer()
        }
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    func checkIsolated() {
        precondition(
            isOwnerThread,
            "swift-rabbitmq: a connection's librabbitmq state was touched off its owner thread")
    }

    // MARK: Used by the owner thread

    /// Whether the calling thread owns this executor's connection.
    var isOwnerThread: Bool {
        owner.load(ordering: .relaxed) == Self.currentThreadID()
    }

    /// The calling thread's identifier: never 0, and unique among running threads.
    private static func currentThreadID() -> UInt {
        #if canImport(Darwin)
        UInt(bitPattern: pthread_self())
        #else
        UInt(pthread_self())
        #endif
    }

    /// Makes the calling thread the owner. Called once, first thing on the connection's thread.
    func becomeOwner() {
        owner.store(Self.currentThreadID(), ordering: .relaxed)
    }

    /// The calling thread stops being the owner, unless another one has taken over (a drainer
    /// started as this one was ending).
    private func giveUpOwnership() {
        _ = owner.compareExchange(expected: Self.currentThreadID(), desired: 0, ordering: .relaxed)
    }

    /// Runs the jobs and commands queued so far, in order (not those they enqueue: those wait
    /// for the next turn, so frames are read between). Consecutive commands go to `perform` as
    /// one batch. Returns how many items ran.
    @discardableResult
    func runQueuedJobs(taskExecutor: UnownedTaskExecutor, perform: (CommandBatch) -> Void = { _ in }) -> Int {
        // The queue is swapped with an empty spare rather than copied: the buffers are reused
        // turn after turn and no element is copied or retained on the way.
        var work = state.withLock { state in
            var taken = Deque<Work>()
            swap(&taken, &state.spare)
            swap(&taken, &state.jobs)
            return taken
        }
        let serialExecutor = asUnownedSerialExecutor()
        var batchStart: Int?
        func performBatch(endingBefore end: Int) {
            guard let start = batchStart else { return }
            perform(CommandBatch(work: work[start..<end]))
            batchStart = nil
        }
        for index in work.indices {
            switch work[index] {
            case .command:
                if batchStart == nil { batchStart = index }
            case .job(let job):
                performBatch(endingBefore: index)
                job.runSynchronously(on: serialExecutor)
            case .taskJob(let job):
                performBatch(endingBefore: index)
                // Not isolated to the actor: the task's own (nonisolated) code runs on without
                // a hop; its calls into the actor hop there as from any other thread.
                job.runSynchronously(on: taskExecutor)
            }
        }
        performBatch(endingBefore: work.endIndex)
        let count = work.count
        work.removeAll(keepingCapacity: true)
        state.withLock { swap(&$0.spare, &work) }
        return count
    }

    /// Whether jobs are waiting, and whether the owner was asked to stop.
    var pending: (jobs: Bool, stopRequested: Bool) {
        state.withLock { (!$0.jobs.isEmpty, $0.stopRequested) }
    }

    /// Waits until `socket` (if any, `-1` for none) is readable, a job arrives, a sleeping task
    /// is due, or `timeout` (milliseconds, `-1` = forever) passes. Returns the socket's `revents`.
    func wait(socket: Int32, timeoutMilliseconds: Int32) -> Int16 {
        let (mayBlock, earliestTimer) = state.withLock { state in
            guard state.jobs.isEmpty, !state.stopRequested else { return (false, state.timers.earliest) }
            state.sleeping = true
            return (true, state.timers.earliest)
        }
        var timeout = mayBlock ? timeoutMilliseconds : 0
        if let earliestTimer {
            let untilTimer = pollTimeout(until: earliestTimer)
            if timeout < 0 || untilTimer < timeout { timeout = untilTimer }
        }
        // A tuple, not an array: no allocation per wait.
        var fds = (
            pollfd(fd: wakeReadFD, events: Int16(POLLIN), revents: 0),
            pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        )
        let count: nfds_t = socket >= 0 ? 2 : 1
        let result = withUnsafeMutableBytes(of: &fds) { bytes in
            poll(bytes.baseAddress!.assumingMemoryBound(to: pollfd.self), count, timeout)
        }
        if mayBlock { state.withLock { $0.sleeping = false } }
        if earliestTimer != nil { wakeDueSleepers() }
        guard result > 0 else { return 0 }
        if fds.0.revents != 0 { drainWakeups() }
        return socket >= 0 ? fds.1.revents : 0
    }

    /// Asks the owner thread to tear its connection down and exit after the queued jobs.
    func requestStop() {
        let wasSleeping = state.withLock { state in
            state.stopRequested = true
            defer { state.sleeping = false }
            return state.sleeping
        }
        if wasSleeping { wake() }
    }

    /// Called by the owner thread as it exits. Jobs that arrive later (a task still holding the
    /// connection's actor) run on a short-lived drainer thread, which finds the connection closed.
    /// Sleeping tasks wake with ``AMQPError/Code/connectionClosed``: nothing would wake them.
    func ownerDidExit() {
        giveUpOwnership()
        let (hasJobs, sleepers) = state.withLock { state in
            state.ownerExited = true
            let sleepers = state.timers.takeAll()
            guard !state.jobs.isEmpty, !state.drainerRunning else { return (false, sleepers) }
            state.drainerRunning = true
            return (true, sleepers)
        }
        for sleeper in sleepers { sleeper.resume(throwing: Self.closedWhileSleeping) }
        if hasJobs { startDrainer() }
    }

    // MARK: Sleeping on the loop

    private static let closedWhileSleeping = AMQPError(.connectionClosed, "the connection is closed")

    /// Suspends the calling task until `deadline`; the connection's thread wakes it when its
    /// event loop's wait ends (see ``AMQPConnection/sleep(until:)``).
    ///
    /// Unchecked continuations, and an identifier reserved up front rather than a box the
    /// cancellation handler reads: a task that sleeps once per message pays no allocation for it.
    /// Each continuation is resumed exactly once, by whoever takes it out of the timers under the
    /// lock (the loop when due, the cancellation handler, or the owner's exit), or at once by the
    /// body when it never went in.
    nonisolated(nonsending) func sleep(until deadline: ContinuousClock.Instant) async throws {
        try Task.checkCancellation()
        let id = state.withLock { $0.timers.reserveID() }
        try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Void, any Error>) in
                enum Decision { case slept, wakeLoop, closed, cancelled }
                let decision: Decision = state.withLock { state in
                    if state.ownerExited { return .closed }
                    // Checked under the lock: a cancellation after this finds the timer.
                    if Task.isCancelled { return .cancelled }
                    let isEarliest = state.timers.add(continuation, deadline: deadline, id: id)
                    guard isEarliest, state.sleeping else { return .slept }
                    // The loop waits for a later moment: wake it to wait again, shorter.
                    state.sleeping = false
                    return .wakeLoop
                }
                switch decision {
                case .slept: break
                case .wakeLoop: wake()
                case .closed: continuation.resume(throwing: Self.closedWhileSleeping)
                case .cancelled: continuation.resume(throwing: CancellationError())
                }
            }
        } onCancel: {
            let sleeper = state.withLock { state in state.timers.remove(id: id) }
            sleeper?.resume(throwing: CancellationError())
        }
    }

    /// Resumes the tasks whose sleep is over; they run in the next batch of jobs.
    private func wakeDueSleepers() {
        let now = ContinuousClock.now
        let due = state.withLock { $0.timers.takeDue(at: now) }
        for sleeper in due { sleeper.resume() }
    }

    /// What a drainer does with commands that arrive after the connection is gone: fail them.
    private func drainedCommands(_ commands: CommandBatch) {
        for command in commands { command.abandon() }
    }

    // MARK: Private

    private func wake() {
        var byte: UInt8 = 1
        _ = write(wakeWriteFD, &byte, 1)
    }

    private func drainWakeups() {
        // Producers write at most one byte per sleep, so one read almost always empties the
        // pipe; read again only after a full buffer (saves a failing read per wake-up).
        var buffer: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
        let size = MemoryLayout.size(ofValue: buffer)
        while withUnsafeMutableBytes(of: &buffer, { read(wakeReadFD, $0.baseAddress, size) }) == size {}
    }

    private func startDrainer() {
        startThread(name: "amqp-drain") { [self] in
            // Tasks that prefer the connection's thread keep running here too (on an executor
            // of the drainer's own, so their next suspension returns them to their preference).
            let drainerTaskExecutor = ConnectionTaskExecutor(self)
            let taskExecutor = drainerTaskExecutor.asUnownedTaskExecutor()
            defer { withExtendedLifetime(drainerTaskExecutor) {} }
            becomeOwner()
            while true {
                let more = state.withLock { state in
                    if state.jobs.isEmpty {
                        state.drainerRunning = false
                        return false
                    }
                    return true
                }
                guard more else { return giveUpOwnership() }
                runQueuedJobs(taskExecutor: taskExecutor, perform: drainedCommands)
            }
        }
    }
}

/// A run of consecutive commands from the executor's queue, read in place (not copied out).
struct CommandBatch: Sequence {
    let work: Slice<Deque<ConnectionExecutor.Work>>

    func makeIterator() -> Iterator { Iterator(base: work.makeIterator()) }

    struct Iterator: IteratorProtocol {
        var base: Slice<Deque<ConnectionExecutor.Work>>.Iterator

        mutating func next() -> ConnectionCommand? {
            guard let item = base.next() else { return nil }
            guard case .command(let command) = item else { preconditionFailure("a command batch holds only commands") }
            return command
        }
    }
}

/// A non-blocking pipe, closed on exec: a thread polls its read end, others write a byte to its
/// write end to wake it.
func makeWakeUpPipe() -> (read: Int32, write: Int32) {
    var fds: [Int32] = [-1, -1]
    let rc = pipe(&fds)
    precondition(rc == 0, "swift-rabbitmq: pipe() failed with errno \(errno)")
    for fd in fds {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    }
    return (fds[0], fds[1])
}

/// `poll`'s timeout in milliseconds from `now` until `instant`: 0 once it has passed, rounded up
/// before (a 0 ms timeout for a deadline 0.4 ms away would spin).
func pollTimeout(until instant: ContinuousClock.Instant, from now: ContinuousClock.Instant = .now) -> Int32 {
    let remaining = now.duration(to: instant)
    guard remaining > .zero else { return 0 }
    let (seconds, attoseconds) = remaining.components
    return Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1)
}

/// Starts a dedicated OS thread (not one of Swift's cooperative threads: the loop blocks in `poll`).
func startThread(name: String, _ body: @escaping @Sendable () -> Void) {
    let thread = Thread(block: body)
    thread.name = name
    thread.start()
}
