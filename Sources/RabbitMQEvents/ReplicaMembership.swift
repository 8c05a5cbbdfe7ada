/// Which replicas of a partitioned ``EventDispatcher`` are alive, and which partitions each one
/// consumes: the decisions, as a value, so they are tested without a broker.
///
/// Every replica announces itself on the consumer group's fanout exchange every heartbeat; a
/// replica not heard from within ``timeout`` is gone (one that shuts down says so at once). The
/// live replicas, sorted by id, take the partitions in turn: partition `p` belongs to replica
/// `p % count`. Every replica computes the same assignment from the same view, and while views
/// differ (a replica just joined or left) two replicas may both subscribe to a partition: its
/// queue's single active consumer keeps them from consuming it at the same time, so order never
/// depends on the views agreeing, only how soon a partition moves.
struct ReplicaMembership {
    /// This replica's id.
    let me: String
    /// How long a replica stays alive without a heartbeat.
    let timeout: Duration
    private var lastHeard: [String: ContinuousClock.Instant] = [:]

    init(me: String, timeout: Duration) {
        self.me = me
        self.timeout = timeout
    }

    /// A heartbeat of `replica` arrived at `instant`.
    mutating func heard(_ replica: String, at instant: ContinuousClock.Instant) {
        guard replica != me else { return }
        if let last = lastHeard[replica], last > instant { return }
        lastHeard[replica] = instant
    }

    /// `replica` announced that it leaves.
    mutating func left(_ replica: String) {
        lastHeard[replica] = nil
    }

    /// The live replicas at `instant`, this one included, sorted by id.
    mutating func live(at instant: ContinuousClock.Instant) -> [String] {
        lastHeard = lastHeard.filter { instant - $0.value <= timeout }
        return ([me] + lastHeard.keys).sorted()
    }

    /// The partitions of `count` that this replica consumes at `instant`.
    mutating func assignment(partitions count: Int, at instant: ContinuousClock.Instant) -> Set<Int> {
        Self.partitions(of: me, among: live(at: instant), count: count)
    }

    /// The partitions of `count` that `replica` consumes when `replicas` (sorted) are alive.
    static func partitions(of replica: String, among replicas: [String], count: Int) -> Set<Int> {
        guard let position = replicas.firstIndex(of: replica), count > 0 else { return [] }
        return Set(stride(from: position, to: count, by: replicas.count))
    }
}
