import Foundation
import RabbitMQ
import Testing

/// What a fault test counts: every message gets an id (its index, in the body and as message
/// id); the publisher records each id's verdict, the consumer each delivery of it.
// @unchecked: every stored property is read and written only while holding `lock`.
final class MessageLedger: @unchecked Sendable {
    private let lock = NSLock()
    private var confirmed = Set<Int>()
    private var failed = Set<Int>()
    private var failureReasons: [String: Int] = [:]
    /// Ids the test published a second time: their duplicates are explained.
    private var republished = Set<Int>()
    private var deliveries: [Int: Int] = [:]
    /// Deliveries of an id already delivered, and whether each was flagged as redelivered.
    private var duplicates: [(id: Int, redelivered: Bool)] = []
    private var firstDeliveryAfterMark: ContinuousClock.Instant?
    private var mark: ContinuousClock.Instant?
    private var handedOver = 0

    func recordVerdict(_ id: Int, failure: (any Error)? = nil) {
        lock.withLock {
            guard let failure else {
                confirmed.insert(id)
                return
            }
            failed.insert(id)
            let reason = (failure as? AMQPError).map { "\($0.code)\($0.replyCode.map { " \($0)" } ?? "")" } ?? "\(failure)"
            failureReasons[reason, default: 0] += 1
        }
    }

    func recordDelivery(_ id: Int, redelivered: Bool) {
        lock.withLock {
            if let mark, firstDeliveryAfterMark == nil, ContinuousClock.now > mark { firstDeliveryAfterMark = .now }
            deliveries[id, default: 0] += 1
            if deliveries[id]! > 1 { duplicates.append((id, redelivered)) }
        }
    }

    /// From `instant` on, remember when the next delivery arrives (recovery time).
    func mark(_ instant: ContinuousClock.Instant) {
        lock.withLock {
            mark = instant
            firstDeliveryAfterMark = nil
        }
    }

    var firstDeliveryAfterMarkTime: ContinuousClock.Instant? { lock.withLock { firstDeliveryAfterMark } }

    /// The publisher handed over `count` messages so far.
    func recordHandedOver(_ count: Int) { lock.withLock { handedOver = count } }

    /// The ids whose publish failed.
    var failedIDs: [Int] { lock.withLock { failed.sorted() } }

    /// How many messages the publisher has handed over so far (to the nearest 100).
    var handedOverCount: Int { lock.withLock { handedOver } }

    /// Waits until the publisher has handed over at least `count` messages.
    func waitUntilHandedOver(_ count: Int) async throws {
        Watchdog.note("waiting until the publisher handed over \(count) messages")
        while lock.withLock({ handedOver }) < count { try await Task.sleep(for: .milliseconds(5)) }
    }

    /// Confirmed ids never delivered.
    var lost: [Int] { lock.withLock { confirmed.filter { deliveries[$0] == nil }.sorted() } }
    var confirmedCount: Int { lock.withLock { confirmed.count } }
    var failedCount: Int { lock.withLock { failed.count } }
    var consumedCount: Int { lock.withLock { deliveries.count } }
    var duplicateCount: Int { lock.withLock { duplicates.count } }
    /// Duplicates the broker did not flag as redelivered and the test did not republish.
    var unflaggedDuplicates: [Int] {
        lock.withLock { duplicates.filter { !$0.redelivered && !republished.contains($0.id) }.map(\.id) }
    }

    /// The test publishes `ids` again (a retry): a second copy of them is no surprise.
    func markRepublished(_ ids: [Int]) { lock.withLock { republished.formUnion(ids) } }

    /// Waits (bounded) until every confirmed id was delivered.
    func waitUntilConfirmedConsumed(within limit: Duration) async throws {
        Watchdog.note("waiting until every confirmed message was consumed; \(summary("so far", sent: 0))")
        let deadline = ContinuousClock.now + limit
        while !lost.isEmpty, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(100)) }
    }

    func summary(_ scenario: String, sent: Int) -> String {
        "\(scenario): sent \(sent), confirmed \(confirmedCount), failed \(failedCount), consumed \(consumedCount), "
            + "lost \(lost.count), duplicated \(duplicateCount) (unflagged \(unflaggedDuplicates.count))"
            + (failedCount > 0 ? "; failures by reason \(lock.withLock { failureReasons })" : "")
    }
}

/// Aborts `connection` after `limit` unless cancelled first: a test that would wait for ever for
/// a delivery fails with the connection's error instead, and says where.
func abortConnection(_ connection: AMQPConnection, after limit: Duration) -> Task<Void, any Error> {
    Task {
        try await Task.sleep(for: limit)
        Watchdog.note("aborting the connection: the test ran past \(limit)")
        await connection.abort()
    }
}

/// The events of one connection, collected as they come.
// @unchecked: `events` is read and written only while holding `lock`; the task is set once.
final class EventLog: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [AMQPConnection.Event] = []
    private var task: Task<Void, Never>?

    init(_ connection: AMQPConnection) {
        let stream = connection.events()
        task = Task { [weak self] in
            for await event in stream { self?.lock.withLock { self?.events.append(event) } }
        }
    }

    deinit { task?.cancel() }

    var all: [AMQPConnection.Event] { lock.withLock { events } }

    func count(_ matches: (AMQPConnection.Event) -> Bool) -> Int { all.filter(matches).count }

    /// Waits (bounded) until `count` events match; returns whether they did.
    @discardableResult
    func waitFor(
        _ count: Int = 1, within limit: Duration = .seconds(60), _ matches: (AMQPConnection.Event) -> Bool
    ) async throws -> Bool {
        Watchdog.note("waiting for \(count) connection event(s); seen so far: \(all)")
        let deadline = ContinuousClock.now + limit
        while self.count(matches) < count {
            guard ContinuousClock.now < deadline else { return false }
            try await Task.sleep(for: .milliseconds(20))
        }
        return true
    }

    static func isRecovered(_ event: AMQPConnection.Event) -> Bool {
        if case .recovered = event { true } else { false }
    }

    static func isDisconnected(_ event: AMQPConnection.Event) -> Bool {
        if case .disconnected = event { true } else { false }
    }
}

/// The publishing and consuming sides of a fault test.
enum FaultLoad {
    /// Publishes `count` persistent messages in confirm mode through a window, then waits for
    /// every verdict and records it. A publish that throws before it is handed over counts as
    /// failed too. `pause` after every 100 messages stretches the publish over the faults.
    static func publish(
        _ count: Int, to queue: String, on connection: AMQPConnection, ledger: MessageLedger,
        pause: Duration = .zero
    ) async throws {
        let channel = try await connection.openChannel()
        try await channel.confirmSelect(window: 500)
        var pending: [(Int, PublishConfirmation)] = []
        for id in 0..<count {
            do {
                let confirmation = try await channel.publishWithoutWaiting(
                    Array(String(id).utf8), routingKey: queue,
                    properties: BasicProperties(deliveryMode: .persistent, messageID: String(id)))
                pending.append((id, confirmation))
            } catch {
                ledger.recordVerdict(id, failure: error)
            }
            if id % 100 == 0 {
                ledger.recordHandedOver(id)
                if pause > .zero { try await Task.sleep(for: pause) }
            }
        }
        Watchdog.note("waiting for the verdicts of \(pending.count) publishes")
        for (id, confirmation) in pending {
            do {
                try await confirmation.wait()
                ledger.recordVerdict(id)
            } catch {
                ledger.recordVerdict(id, failure: error)
            }
        }
    }

    /// What a careful application does with failed publishes: publishes each again, waiting for
    /// its confirm, publishing the ones not confirmed again every 200 ms until all are or `limit`
    /// passes. Returns how many were confirmed in the end.
    static func retry(
        _ ids: [Int], to queue: String, on connection: AMQPConnection, ledger: MessageLedger, within limit: Duration
    ) async throws -> Int {
        ledger.markRepublished(ids)
        let channel = try await connection.openChannel()
        try await channel.confirmSelect()
        let deadline = ContinuousClock.now + limit
        var confirmed = 0
        var pending = ids
        // In rounds, each publishing every message still unconfirmed and then waiting for the
        // verdicts: as fast as the broker confirms, however slowly one round trip goes.
        while !pending.isEmpty, ContinuousClock.now < deadline {
            var failed: [Int] = []
            var confirmations: [(id: Int, confirmation: PublishConfirmation)] = []
            for id in pending {
                do {
                    let confirmation = try await channel.publishWithoutWaiting(
                        Array(String(id).utf8), routingKey: queue,
                        properties: BasicProperties(deliveryMode: .persistent, messageID: String(id)))
                    confirmations.append((id, confirmation))
                } catch {
                    failed.append(id)
                }
            }
            for (id, confirmation) in confirmations {
                do {
                    try await confirmation.wait()
                    ledger.recordVerdict(id)
                    confirmed += 1
                } catch {
                    failed.append(id)
                }
            }
            pending = failed
            if !pending.isEmpty { try await Task.sleep(for: .milliseconds(200)) }
        }
        return confirmed
    }

    /// Consumes the queue with manual acknowledgements until cancelled, recording every
    /// delivery. Acknowledgements that fail (a delivery from before a recovery) are left to the
    /// broker's redelivery.
    static func consume(_ queue: String, on connection: AMQPConnection, ledger: MessageLedger) -> Task<Void, any Error> {
        Task {
            let channel = try await connection.openChannel()
            try await channel.basicQos(prefetchCount: 200)
            for try await delivery in try await channel.consume(queue: queue) {
                ledger.recordDelivery(Int(delivery.bodyString) ?? -1, redelivered: delivery.redelivered)
                try? await delivery.ack()
            }
        }
    }
}

extension TestBroker {
    /// A configuration for `url` with a unique connection name.
    static func configuration(url: String, _ name: String = #function, heartbeat: UInt16 = 60) throws
        -> AMQPConnection.Configuration
    {
        var configuration = try AMQPConnection.Configuration(url: url)
        configuration.connectionName = uniqueName(name)
        configuration.heartbeat = heartbeat
        configuration.connectionTimeout = .seconds(10)
        return configuration
    }
}
