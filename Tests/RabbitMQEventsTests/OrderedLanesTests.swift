import Testing

@testable import RabbitMQEvents

@Suite("Ordered lanes: which event of a key runs when")
struct OrderedLanesTests {
    typealias Lanes = OrderedLanes<String>

    private func runs(_ admission: Lanes.Admission) -> String? {
        if case .run(let item) = admission { return item }
        return nil
    }

    private func waits(_ admission: Lanes.Admission) -> Bool {
        if case .waits = admission { return true }
        return false
    }

    private func next(_ next: Lanes.Next) -> String? {
        if case .run(let item) = next { return item }
        return nil
    }

    @Test func differentKeysRunAtOnceTheSameKeyWaitsInOrder() {
        var lanes = Lanes()
        #expect(runs(lanes.admit("a1", key: "a")) == "a1")
        #expect(runs(lanes.admit("b1", key: "b")) == "b1")
        #expect(waits(lanes.admit("a2", key: "a")))
        #expect(waits(lanes.admit("a3", key: "a")))
        #expect(lanes.activeLanes == 2)
        #expect(lanes.waiting == 2)
        #expect(next(lanes.finished(key: "a")) == "a2")
        #expect(next(lanes.finished(key: "a")) == "a3")
        guard case .closed = lanes.finished(key: "a") else { Issue.record("lane a should close"); return }
        guard case .closed = lanes.finished(key: "b") else { Issue.record("lane b should close"); return }
        #expect(lanes.activeLanes == 0)
        // A key whose lane closed opens a new one.
        #expect(runs(lanes.admit("a4", key: "a")) == "a4")
    }

    @Test func aStoppedLaneGivesBackWhatWaitsInOrderAndStartsNothing() {
        var lanes = Lanes()
        _ = lanes.admit("a1", key: "a")
        _ = lanes.admit("a2", key: "a")
        lanes.stop()
        #expect(waits(lanes.admit("a3", key: "a")), "behind a1, to be given back after it")
        guard case .giveBack(let item) = lanes.admit("b1", key: "b") else {
            Issue.record("a new key must not start once stopped")
            return
        }
        #expect(item == "b1")
        guard case .giveBack(let items) = lanes.finished(key: "a") else {
            Issue.record("a stopped lane must give back what waits")
            return
        }
        #expect(items == ["a2", "a3"])
        #expect(lanes.activeLanes == 0)
    }

    /// Many keys and events in a random interleaving: every key's events run in admission order,
    /// one at a time, and each runs exactly once.
    @Test(arguments: 0..<20)
    func randomInterleavingsKeepEveryKeysOrder(seed: Int) {
        var generator = SplitMix(seed: UInt64(seed))
        var lanes = Lanes()
        var admitted: [String: Int] = [:]
        var running: [String: String] = [:]  // key -> item running
        var ran: [String: [String]] = [:]
        var pending = 400
        while pending > 0 || !running.isEmpty {
            if pending > 0, running.isEmpty || generator.next() % 2 == 0 {
                let key = "k\(generator.next() % 7)"
                let item = "\(key)-\(admitted[key, default: 0])"
                admitted[key, default: 0] += 1
                pending -= 1
                if let started = runs(lanes.admit(item, key: key)) {
                    #expect(running[key] == nil, "two events of \(key) at once")
                    running[key] = started
                }
            } else {
                let key = running.keys.sorted()[Int(generator.next() % UInt64(running.count))]
                ran[key, default: []].append(running.removeValue(forKey: key)!)
                if let following = next(lanes.finished(key: key)) { running[key] = following }
            }
        }
        for (key, count) in admitted {
            #expect(ran[key] == (0..<count).map { "\(key)-\($0)" })
        }
        #expect(lanes.activeLanes == 0 && lanes.waiting == 0)
    }
}

/// A small deterministic generator for repeatable interleavings.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE5_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
