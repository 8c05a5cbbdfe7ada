import Testing

@testable import RabbitMQEvents

@Suite("Replica membership: who consumes which partition")
struct ReplicaMembershipTests {
    let start = ContinuousClock.now

    @Test func aLoneReplicaTakesEveryPartition() {
        var membership = ReplicaMembership(me: "b", timeout: .seconds(3))
        #expect(membership.assignment(partitions: 4, at: start) == [0, 1, 2, 3])
    }

    @Test func replicasShareThePartitionsAndEveryPartitionHasExactlyOneOwner() {
        for count in 1...12 {
            for replicas in 1...5 {
                let ids = (0..<replicas).map { "replica-\($0)" }
                var owners = [Int](repeating: 0, count: count)
                var shares: [Int] = []
                for id in ids {
                    let mine = ReplicaMembership.partitions(of: id, among: ids, count: count)
                    shares.append(mine.count)
                    for partition in mine { owners[partition] += 1 }
                }
                #expect(owners.allSatisfy { $0 == 1 }, "\(count) partitions, \(replicas) replicas")
                // Balanced: shares differ by at most one.
                #expect(shares.max()! - shares.min()! <= 1)
            }
        }
    }

    @Test func aReplicaJoinsThenFallsSilentThenLeaves() {
        var membership = ReplicaMembership(me: "b", timeout: .seconds(3))
        membership.heard("a", at: start)
        #expect(membership.live(at: start + .seconds(1)) == ["a", "b"])
        #expect(membership.assignment(partitions: 4, at: start + .seconds(1)) == [1, 3])
        // Silent for longer than the timeout: gone, and b takes everything back.
        #expect(membership.assignment(partitions: 4, at: start + .seconds(4)) == [0, 1, 2, 3])
        membership.heard("c", at: start + .seconds(5))
        #expect(membership.assignment(partitions: 4, at: start + .seconds(5)) == [0, 2])
        membership.left("c")
        #expect(membership.live(at: start + .seconds(5)) == ["b"])
    }

    @Test func ownHeartbeatsAndOlderOnesChangeNothing() {
        var membership = ReplicaMembership(me: "b", timeout: .seconds(3))
        membership.heard("b", at: start)
        membership.heard("a", at: start + .seconds(2))
        membership.heard("a", at: start)  // late, out of order
        #expect(membership.live(at: start + .seconds(4)) == ["a", "b"])
    }
}
