/// The connection's thread as a `TaskExecutor` (``AMQPConnection/taskExecutor``).
///
/// A separate object from ``ConnectionExecutor``, the actor's serial executor, although both
/// feed the same queue: the two protocols share their `enqueue` requirement, and the jobs must
/// be told apart. An actor's job runs isolated to the actor; a task's job runs on the task
/// executor only, so the task's own nonisolated code carries on without a hop after each
/// `await`, and its calls into the actor hop there as they would from any other thread.
final class ConnectionTaskExecutor: TaskExecutor {
    /// Kept alive by every task that prefers this executor, so the queue outlives them.
    let executor: ConnectionExecutor

    init(_ executor: ConnectionExecutor) {
        self.executor = executor
    }

    func enqueue(_ job: consuming ExecutorJob) {
        executor.enqueueTaskJob(UnownedJob(job))
    }

    func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }
}
