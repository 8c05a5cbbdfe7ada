internal import CRabbitMQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension ConnectionCore {
    // MARK: - The event loop's turn

    /// One turn of the event loop, run on the connection's thread between batches of jobs: wait
    /// for the socket, a job or the next tick; read every frame that is ready; check timers.
    /// What the jobs before it wrote, and what it writes itself, leaves before it can wait.
    ///
    /// The clock is read once per turn, after the wait. The wait's timeout is reckoned from the
    /// previous turn's reading: a tick comes at most one batch of jobs late, which nothing
    /// timed by ticks (heartbeats, RPC and close deadlines, all seconds long) can notice.
    /// Sleeping tasks are timed by the executor, which reads the clock for them.
    func turn() {
        // Every batch writes the frames it appended; a leftover would let librabbitmq's writes
        // overtake it.
        assert(outbound.isEmpty, "frames appended by the engine were left unwritten")
        writeOutboundFrames()
        writes.flush()
        defer { writes.flush() }
        guard let connection else {
            if case .recovering(let progress) = phase {
                // Between reconnect attempts: jobs, and the next attempt when it is due. While
                // an attempt runs on its own thread: jobs (its outcome is one), and the timers.
                let wakeUp = isReconnecting ? clock.now + .seconds(1) : progress.nextAttempt
                _ = executor.wait(socket: -1, timeoutMilliseconds: pollTimeout(until: wakeUp))
                markProgress(now: clock.now)
                expireRecoveryWaiters(now: clock.now)
                if !isReconnecting, clock.now >= progress.nextAttempt { attemptReconnect() }
                return
            }
            // Closed: nothing to read, only jobs (which fail fast) until the owner stops.
            _ = executor.wait(socket: -1, timeoutMilliseconds: -1)
            markProgress(now: clock.now)
            return
        }
        // Frames may sit inside librabbitmq while the socket has nothing: never sleep on them.
        let libraryHasData = amqp_frames_enqueued(connection) != 0 || amqp_data_in_buffer(connection) != 0
        if !libraryHasData, !nextTickIsTimed, hasTimedWork {
            // A deadline appeared since the last tick (an RPC was sent, say): check it in time.
            nextTick = min(nextTick, lastTurn + ticks.interval(timed: true))
            nextTickIsTimed = true
        }
        let timeout = libraryHasData ? 0 : pollTimeout(until: nextTick, from: lastTurn)
        let events = executor.wait(socket: amqp_get_sockfd(connection), timeoutMilliseconds: timeout)
        let now = clock.now
        lastTurn = now
        markProgress(now: now)
        if events != 0 { lastInbound = now }
        let tickDue = now >= nextTick
        if events != 0 || libraryHasData || tickDue {
            if readFrames(limit: 4096) { lastInbound = now }
            for record in channelsWithDeliveries {
                // A sequence whose reader went away takes nothing: give those back at once.
                for content in record.flushDeliveries() { giveBack(content, on: record, outstanding: true) }
            }
            channelsWithDeliveries.removeAll(keepingCapacity: true)
            reportMessageCounts()
        }
        if tickDue {
            checkTimers(now: now)
            nextTickIsTimed = hasTimedWork
            nextTick = now + ticks.interval(timed: nextTickIsTimed)
        }
        if let connection = self.connection {
            amqp_maybe_release_buffers(connection)
        }
    }

    /// Reads and dispatches frames until librabbitmq has none left (`AMQP_STATUS_TIMEOUT` with a
    /// zero timeout means the kernel had nothing more; on plain TCP, an empty librabbitmq buffer
    /// after a frame ends it too) or `limit` were handled. Reading is also what makes librabbitmq
    /// send heartbeats and notice missed ones.
    /// Returns whether any frame was read.
    func readFrames(limit: Int) -> Bool {
        var frame = amqp_frame_t()
        var noWait = timeval(tv_sec: 0, tv_usec: 0)
        for count in stride(from: 1, through: limit, by: 1) {
            guard let connection else { return count > 1 }
            let status = amqp_simple_wait_frame_noblock(connection, &frame, &noWait)
            if status == AMQP_STATUS_TIMEOUT.rawValue { return count > 1 }
            guard status == AMQP_STATUS_OK.rawValue else {
                tearDown(connectionLost(status: status, while: "reading"))
                return count > 1
            }
            handle(frame)
            // A few frames, and librabbitmq holds nothing more: the peer sends slowly, and asking
            // again would cost a failing `recv` and a `poll` of librabbitmq's own; the loop's
            // wait tells when the socket has more. (After many frames more are likely there
            // already: go on.) Plain TCP only: over TLS, OpenSSL may hold decrypted bytes the
            // socket's readiness does not show.
            if count < Self.framesOfASlowRead, configuration.tls == nil, let connection = self.connection,
                amqp_frames_enqueued(connection) == 0, amqp_data_in_buffer(connection) == 0
            {
                return true
            }
        }
        return true
    }

    /// Tells the stall watchdog the loop went round, at most every ``progressMarkInterval``:
    /// its limit is seconds long, and the mark takes a lock.
    private func markProgress(now: ContinuousClock.Instant) {
        guard now >= progressMarkedAt + Self.progressMarkInterval else { return }
        progressMarkedAt = now
        executor.markProgress(at: now)
    }

    /// How often the loop marks its progress for the stall watchdog (whose limit is at least
    /// 5 s).
    static let progressMarkInterval = Duration.milliseconds(100)

    /// Fewer frames than this in one read, and the read ends with librabbitmq's buffer (see
    /// ``readFrames(limit:)``).
    static let framesOfASlowRead = 32

    /// Whether anything waits with a deadline that ``checkTimers(now:)`` enforces.
    var hasTimedWork: Bool {
        if case .closing = phase { return true }
        if !blockedPublishers.isEmpty || !recoveryWaiters.isEmpty { return true }
        return channels.values.contains { record in
            if case .draining = record.phase { return true }
            return record.pending.first?.deadline != nil
        }
    }

    func checkTimers(now: ContinuousClock.Instant) {
        if case .closing(let deadline) = phase, now >= deadline {
            shutDown(AMQPError(.connectionClosed, "the connection was closed by the application (the broker did not confirm within \(configuration.closeTimeout))"))
            return
        }
        if heartbeat > .zero, lastInbound.duration(to: now) > heartbeat * 2 {
            tearDown(
                AMQPError(.heartbeatMissed, "the broker sent nothing for more than two heartbeat intervals (\(heartbeat * 2))"))
            return
        }
        expireBlockedPublishers(now: now)
        expireRecoveryWaiters(now: now)
        for record in channels.values {
            if case .draining(let until) = record.phase, now >= until {
                channels[record.number] = nil
            } else if let head = record.pending.first, let deadline = head.deadline, now >= deadline {
                tearDown(
                    AMQPError(
                        .timeout,
                        "no reply to \(head.name) on channel \(record.number) within \(configuration.rpcTimeout); the connection was closed because the channel's state is unknown"))
                return
            }
        }
    }
}
