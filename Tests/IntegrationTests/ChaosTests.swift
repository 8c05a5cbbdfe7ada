import Foundation
import GRDB
import OrderEvents
import RabbitMQ
import RabbitMQEvents
import RabbitMQEventsSQLite
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Three inventory-daemon processes share four partitions and one SQLite file while 2,000 orders
/// flow (every second one cancelled right after it was created); one replica is killed with
/// SIGKILL and started again, and the others' connections are closed by the broker. Afterwards
/// the database must show every order's creation applied before its cancellation, every event's
/// effect applied exactly once, nothing lost and nothing dead-lettered.
@Suite(
    "Chaos: daemon replicas killed and cut while orders flow",
    .enabled(if: TestBroker.reachableOrRequired, "needs a broker; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"), .watchdog)
struct ChaosTests {
    static let orders = 2_000
    static let events = orders + orders / 2

    struct Replica {
        let name: String
        var process: ChildProcess
    }

    @Test func replicasKilledAndCutKeepOrderAndApplyEveryEventOnce() async throws {
        let queue = TestBroker.uniqueName("chaos")
        let exchange = queue + ".exchange"
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("swift-rabbitmq-\(queue)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let database = folder.appendingPathComponent("inventory.sqlite").path
        let record = folder.appendingPathComponent("applied.txt").path
        let daemon = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("inventory-daemon").path
        func start(_ name: String) throws -> ChildProcess {
            try ChildProcess.start(
                daemon,
                [
                    "--queue", queue, "--exchange", exchange, "--partitions", "4", "--database", database,
                    "--record", record, "--prefetch", "16", "--work-milliseconds", "1", "--connection-name", name,
                ],
                // Debug: a replica that does not become ready shows how far its start got.
                environment: ["AMQP_URL": TestBroker.url, "LOG_LEVEL": "debug"])
        }
        func applied() -> [Substring] {
            ((try? String(contentsOfFile: record, encoding: .utf8)) ?? "").split(separator: "\n")
        }
        // The events applied, from the inbox (the record's lines are written after each commit,
        // so a replica killed in between leaves one out).
        var reader: DatabasePool?
        func appliedCount() async throws -> Int {
            try await reader?.read { db in
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM rabbitmq_inbox WHERE consumer_group = ?", arguments: [queue])
            } ?? 0
        }
        func waitUntilApplied(_ count: Int) async throws -> Bool {
            let deadline = ContinuousClock.now + .seconds(240)
            while try await appliedCount() < count, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            return try await appliedCount() >= count
        }

        // The inventory's answers (InventoryReserved, through each replica's outbox in the same
        // transaction as the effect): one per order, whatever was killed.
        let answers = queue + ".answers"
        let connection = try await TestBroker.connect()
        try await connection.withChannel { channel in
            try await channel.exchangeDeclare(exchange, type: .topic, durable: true)
            try await channel.queueDeclare(answers, durable: true)
            try await channel.queueBind(answers, exchange: exchange, routingKey: "inventory.*")
        }

        var replicas: [Replica] = []
        var outputs: [String] = []
        for name in ["chaos-a", "chaos-b", "chaos-c"] {
            let process = try start(name)
            #expect(try await process.waitForOutput(containing: "ready", within: .seconds(180)), "\(process.output)")
            replicas.append(Replica(name: name, process: process))
        }
        reader = try DatabasePool(path: database)

        // Every order as OrderCreated, and every second one cancelled right after.
        let publisher = try await EventPublisher(connection: connection, exchange: exchange, window: 500)
        let publishing = Task {
            var confirmations: [PublishConfirmation] = []
            for index in 0..<Self.orders {
                let items = [OrderItem(sku: "SKU-\(index % 5)", quantity: 1 + index % 3, price: 1)]
                let orderID = "order-\(index)"
                confirmations.append(
                    try await publisher.publishWithoutWaiting(
                        OrderCreated(orderID: orderID, customerID: "c", items: items), messageID: "\(orderID)-created"))
                if index % 2 == 1 {
                    confirmations.append(
                        try await publisher.publishWithoutWaiting(
                            OrderCancelled(orderID: orderID, items: items, reason: "chaos"), messageID: "\(orderID)-cancelled"))
                }
            }
            for confirmation in confirmations { try await confirmation.wait() }
        }

        // A third of the way: kill -9 one replica; its partitions must move to the others.
        #expect(try await waitUntilApplied(Self.events / 3))
        replicas[1].process.signal(SIGKILL)
        _ = await replicas[1].process.waitForExit()
        let killed = ContinuousClock.now
        let takeover = try await timeUntilEveryPartitionIsConsumed(queue: queue, since: killed)
        outputs.append(replicas[1].process.output)
        replicas[1].process = try start(replicas[1].name)
        #expect(try await replicas[1].process.waitForOutput(containing: "ready", within: .seconds(180)), "\(replicas[1].process.output)")

        // Two thirds of the way: the broker closes every connection of the other two.
        #expect(try await waitUntilApplied(2 * Self.events / 3))
        var forceClosed = 0
        for replica in [replicas[0], replicas[2]] {
            forceClosed += try await TestBroker.forceCloseAll(connectionsNamedLike: replica.name, reason: "chaos test")
        }

        try await publishing.value
        let allApplied = try await waitUntilApplied(Self.events)
        let appliedInAll = try await appliedCount()
        #expect(allApplied, "applied \(appliedInAll) of \(Self.events)")
        // Give a redelivery still under way the time to show up as a duplicate, then stop.
        try await Task.sleep(for: .seconds(1))
        for replica in replicas {
            replica.process.signal(SIGTERM)
            #expect(await replica.process.waitForExit() == 0, "\(replica.name): \(replica.process.output.suffix(2000))")
            outputs.append(replica.process.output)
        }

        reader = nil
        // Each applied line once: no effect applied twice (a replica killed between its commit and
        // its line may leave a line out, never add one).
        let lines = applied()
        let appliedIDs = lines.map { $0.split(separator: " ")[1] }
        #expect(Set(appliedIDs).count == appliedIDs.count, "an event was applied twice")

        // The database is the truth.
        let store = try DatabaseQueue(path: database)
        try await store.read { db in
            let statuses = try Dictionary(
                uniqueKeysWithValues: Row.fetchAll(db, sql: "SELECT order_id, status FROM orders").map {
                    (String($0["order_id"]), String($0["status"]))
                })
            #expect(statuses.count == Self.orders, "orders known: \(statuses.count)")
            var outOfOrder = 0
            var wrongStatus = 0
            var wrongLedger = 0
            for index in 0..<Self.orders {
                let orderID = "order-\(index)"
                let expected = index % 2 == 1 ? "CANCELLED" : "RESERVED"
                if statuses[orderID] != expected { wrongStatus += 1 }
                let movements = try Row.fetchAll(
                    db, sql: "SELECT event_type, quantity FROM stock_movements WHERE order_id = ? ORDER BY id", arguments: [orderID])
                let quantity = 1 + index % 3
                let wanted: [(String, Int)] =
                    index % 2 == 1
                    ? [("OrderCreated", quantity), ("OrderCancelled", -quantity)] : [("OrderCreated", quantity)]
                let got = movements.map { row -> (String, Int) in (row["event_type"], row["quantity"]) }
                if got.count != wanted.count || zip(got, wanted).contains(where: { $0.0 != $1.0 || $0.1 != $1.1 }) {
                    // A cancellation applied first leaves a tombstone and no movement at all.
                    if got.isEmpty || got.first?.0 == "OrderCancelled" { outOfOrder += 1 } else { wrongLedger += 1 }
                }
            }
            #expect(outOfOrder == 0, "\(outOfOrder) orders had their cancellation applied before their creation")
            #expect(wrongStatus == 0, "\(wrongStatus) orders in the wrong state")
            #expect(wrongLedger == 0, "\(wrongLedger) orders whose stock moved other than once per event")
            // The stock equals what the events imply: the orders left standing.
            for sku in 0..<5 {
                let expected = stride(from: 0, to: Self.orders, by: 2).filter { $0 % 5 == sku }.map { 1 + $0 % 3 }.reduce(0, +)
                let reserved = try Int.fetchOne(db, sql: "SELECT reserved FROM stock WHERE sku = ?", arguments: ["SKU-\(sku)"])
                #expect(reserved == expected, "SKU-\(sku): \(reserved ?? -1) reserved, \(expected) expected")
            }
            let inbox = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM rabbitmq_inbox WHERE consumer_group = ?", arguments: [queue])
            #expect(inbox == Self.events)
        }

        // Nothing left in the partitions, nothing dead-lettered.
        let left = try await connection.withChannel { channel in
            var counts: [UInt32] = []
            for name in (0..<4).map({ "\(queue).partition-\($0)" }) + ["\(queue).dead-letter"] {
                counts.append(try await channel.queueDeclare(name, passive: true).messageCount)
            }
            return counts
        }
        #expect(left == [0, 0, 0, 0, 0], "messages left in the partitions and the dead-letter queue")

        // Every order answered: its InventoryReserved left the outbox (the outbox is empty) and
        // reached the answers queue at least once, with the same message id each time.
        let outbox = try await SQLiteEventStore(path: database).outboxDepth()
        #expect(outbox == 0, "events left in the outbox")
        var answered: [String: Int] = [:]
        try await connection.withChannel { channel in
            while let message = try await channel.basicGet(queue: answers, autoAck: true) {
                answered[message.properties.messageID ?? "", default: 0] += 1
            }
        }
        let expectedAnswers = Set((0..<Self.orders).map { "order-\($0)-reserved" })
        #expect(Set(answered.keys) == expectedAnswers, "answers: \(answered.count) of \(Self.orders) orders")
        let republished = answered.values.reduce(0, +) - answered.count

        let all = outputs.joined(separator: "\n")
        let duplicates = all.components(separatedBy: "duplicate ").count - 1
        let moves = all.components(separatedBy: "consuming partition").count - 1
        print(
            "FIGURES chaos: \(Self.orders) orders, \(Self.events) events, 3 replicas, 4 partitions; "
                + "applied \(Self.events) (\(Set(appliedIDs).count) with their record line), duplicates delivered and skipped \(duplicates), "
                + "partitions taken \(moves) times (4 at start), takeover after kill -9 "
                + "\(takeover.formatted(.units(allowed: [.seconds, .milliseconds], width: .narrow))), "
                + "connections force-closed \(forceClosed); answers \(answered.count) (\(republished) republished by a relay after a crash)")

        try await connection.withChannel { channel in
            for index in 0..<4 { try await channel.queueDelete("\(queue).partition-\(index)") }
            try await channel.queueDelete(queue + ".dead-letter")
            try await channel.queueDelete(answers)
            for name in [exchange, queue + ".partitions", queue + ".replicas", queue + ".dead-letter"] {
                try await channel.exchangeDelete(name)
            }
        }
        await connection.close()
    }

    /// How long after `since` until every partition queue has an active consumer again.
    private func timeUntilEveryPartitionIsConsumed(queue: String, since: ContinuousClock.Instant) async throws -> Duration {
        let connection = try await TestBroker.connect()
        defer { Task { await connection.close() } }
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            var consumed = 0
            try await connection.withChannel { channel in
                for index in 0..<4 {
                    if try await channel.queueDeclare("\(queue).partition-\(index)", passive: true).consumerCount > 0 {
                        consumed += 1
                    }
                }
            }
            if consumed == 4 { return since.duration(to: .now) }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("the killed replica's partitions were not taken over within a minute")
        return since.duration(to: .now)
    }
}
