/// The connection's thread: runs the actor's jobs and the event loop's turns until the public
/// handle is released, then tears the connection down.
enum ConnectionLoop {
    static func start(_ core: ConnectionCore, name: String) {
        startThread(name: name) {
            let executor = core.executor
            executor.becomeOwner()
            let perform = { (commands: CommandBatch) in core.assumeIsolated { $0.perform(commands) } }
            let taskExecutor = core.taskExecutor.asUnownedTaskExecutor()
            let watch = StallWatchdog.shared.register(executor.liveness)
            while true {
                executor.runQueuedJobs(taskExecutor: taskExecutor, perform: perform)
                // What those jobs handed over (a task's publish or acknowledgement, the task
                // resumed by a confirm) runs now rather than after a turn's poll: once, so the
                // loop still reads between two batches of a task that never waits.
                if executor.pending.jobs { executor.runQueuedJobs(taskExecutor: taskExecutor, perform: perform) }
                let pending = executor.pending
                if pending.stopRequested && !pending.jobs { break }
                core.assumeIsolated { $0.turn() }
            }
            core.assumeIsolated {
                $0.shutDown(AMQPError(.connectionClosed, "the connection was released without being closed"))
            }
            executor.runQueuedJobs(taskExecutor: taskExecutor, perform: perform)
            StallWatchdog.shared.unregister(watch)
            executor.ownerDidExit()
        }
    }
}
