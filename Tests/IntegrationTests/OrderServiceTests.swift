import Foundation
import GRDB
import RabbitMQ
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `order-service` and `inventory-daemon` as separate processes talking through a real broker:
/// the HTTP API as documented, health before the broker is reachable, and 300 orders placed over
/// HTTP while both programs are killed with SIGKILL and their connections closed by the broker.
@Suite(
    "Order service and inventory daemon over HTTP",
    .enabled(if: TestBroker.reachableOrRequired, "needs a broker; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"), .watchdog)
struct OrderServiceTests {
    /// The names and files one test's two services use.
    struct Setup {
        let exchange = TestBroker.uniqueName("orders")
        let folder: URL
        var ordersQueue: String { exchange + "-orders" }
        var inventoryQueue: String { exchange + "-inventory" }
        var ordersDatabase: String { folder.appendingPathComponent("orders.sqlite").path }
        var inventoryDatabase: String { folder.appendingPathComponent("inventory.sqlite").path }

        init() throws {
            folder = FileManager.default.temporaryDirectory.appendingPathComponent("swift-rabbitmq-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        }

        func startOrderService(url: String = TestBroker.url, database: String? = nil) async throws -> ServiceProcess {
            try await ServiceProcess.start(
                "order-service",
                [
                    "--exchange", exchange, "--queue", ordersQueue, "--database", database ?? ordersDatabase, "--port", "0",
                    "--connection-name", ordersQueue,
                ],
                listeningPrefix: "listening on ", url: url)
        }

        func startInventory(stock: String, database: String? = nil) async throws -> ServiceProcess {
            let service = try await ServiceProcess.start(
                "inventory-daemon",
                [
                    "--exchange", exchange, "--queue", inventoryQueue, "--database", database ?? inventoryDatabase, "--stock", stock,
                    "--http-port", "0", "--connection-name", inventoryQueue, "--work-milliseconds", "1",
                ],
                listeningPrefix: "http listening on ")
            #expect(try await service.process.waitForOutput(containing: "ready", within: .seconds(180)), "\(service.process.output)")
            return service
        }

        /// Deletes the queues and exchanges the services declared, and the files.
        func cleanUp() async throws {
            let connection = try await TestBroker.connect()
            try await connection.withChannel { channel in
                for queue in [ordersQueue, inventoryQueue] {
                    try await channel.queueDelete(queue)
                    try await channel.queueDelete(queue + ".dead-letter")
                    try await channel.exchangeDelete(queue + ".dead-letter")
                }
                try await channel.exchangeDelete(exchange)
            }
            await connection.close()
            try? FileManager.default.removeItem(at: folder)
        }

        /// Messages waiting in the services' queues and dead-letter queues.
        func messagesLeft() async throws -> [String: UInt32] {
            let connection = try await TestBroker.connect()
            var left: [String: UInt32] = [:]
            try await connection.withChannel { channel in
                for queue in [ordersQueue, inventoryQueue, ordersQueue + ".dead-letter", inventoryQueue + ".dead-letter"] {
                    left[queue] = try await channel.queueDeclare(queue, passive: true).messageCount
                }
            }
            await connection.close()
            return left
        }
    }

    /// SIGTERM, and the exit status.
    static func stop(_ service: ServiceProcess) async -> Int32 {
        service.process.signal(SIGTERM)
        return await service.process.waitForExit()
    }

    @Test func httpEndpointsAnswerAsDocumented() async throws {
        let setup = try Setup()
        let inventory = try await setup.startInventory(stock: "SKU-1=3")
        let service = try await setup.startOrderService()
        let base = service.baseURL

        #expect(try await service.waitUntilHealthy(), "\(service.process.output.suffix(2000))")
        let health = try await HTTP.get(base + "/health")
        #expect(health.status == 200, "\(health.text)")
        #expect(health.json["status"] as? String == "UP")

        // Bad input: 400 with a message, and nothing stored.
        let bad = [
            "{not json", #"{"customerId": "c", "items": []}"#, #"{"customerId": "c"}"#,
            #"{"customerId": "c", "items": [{"sku": "SKU-1", "quantity": 0}]}"#,
            #"{"customerId": "c", "items": [{"sku": "SKU-1", "quantity": -2}]}"#,
            #"{"customerId": "c", "items": [{"sku": "SKU-1", "quantity": "2"}]}"#,
            #"{"customerId": 7, "items": [{"sku": "SKU-1", "quantity": 1}]}"#,
            #"{"customerId": "", "items": [{"sku": "SKU-1", "quantity": 1}]}"#,
        ]
        for body in bad {
            let reply = try await HTTP.post(base + "/orders", body)
            #expect(reply.status == 400, "\(body) → \(reply.status) \(reply.text)")
            #expect((reply.json["error"] as? String)?.isEmpty == false, "\(body) → \(reply.text)")
        }
        let stored = try await DatabaseQueue(path: setup.ordersDatabase).read { db in
            try Int.fetchOne(db, sql: "SELECT (SELECT COUNT(*) FROM orders) + (SELECT COUNT(*) FROM rabbitmq_outbox)")
        }
        #expect(stored == 0, "bad requests stored something")

        // Two orders for stock that serves one of them. Which one is not fixed: the inventory
        // daemon keeps each order's events in order, but two orders are handled in lanes of their
        // own, side by side, so whichever it reserves for first gets the stock.
        let first = try await HTTP.post(base + "/orders", #"{"customerId": "c", "items": [{"sku": "SKU-1", "quantity": 2}]}"#)
        #expect(first.status == 202)
        #expect(first.json["status"] as? String == "PENDING")
        let second = try await HTTP.post(base + "/orders", #"{"customerId": "c", "items": [{"sku": "SKU-1", "quantity": 2}]}"#)
        let firstID = try #require(first.json["orderId"] as? String)
        let secondID = try #require(second.json["orderId"] as? String)

        func finalStatus(_ id: String) async throws -> [String: Any] {
            let deadline = ContinuousClock.now + .seconds(60)
            while ContinuousClock.now < deadline {
                let order = try await HTTP.get(base + "/orders/" + id).json
                if order["status"] as? String != "PENDING" { return order }
                try await Task.sleep(for: .milliseconds(50))
            }
            return try await HTTP.get(base + "/orders/" + id).json
        }
        let firstFinal = try await finalStatus(firstID)
        let secondFinal = try await finalStatus(secondID)
        let firstServed = firstFinal["status"] as? String == "CONFIRMED"
        let (servedID, tooManyID) = firstServed ? (firstID, secondID) : (secondID, firstID)
        let (confirmed, rejected) = firstServed ? (firstFinal, secondFinal) : (secondFinal, firstFinal)
        #expect(confirmed["status"] as? String == "CONFIRMED", "\(firstFinal) \(secondFinal)")
        #expect((confirmed["items"] as? [[String: Any]])?.first?["quantity"] as? Int == 2)
        #expect(rejected["status"] as? String == "REJECTED", "\(firstFinal) \(secondFinal)")
        #expect(rejected["reason"] as? String == "SKU-1: 2 wanted, 1 available")

        // Cancelling: 404 unknown, 409 rejected, 202 then 409 for a confirmed one.
        #expect(try await HTTP.post(base + "/orders/ord-unknown/cancel").status == 404)
        #expect(try await HTTP.get(base + "/orders/ord-unknown").status == 404)
        #expect(try await HTTP.post(base + "/orders/\(tooManyID)/cancel").status == 409)
        let cancel = try await HTTP.post(base + "/orders/\(servedID)/cancel")
        #expect(cancel.status == 202)
        #expect(cancel.json["status"] as? String == "CANCELLED")
        #expect(try await HTTP.post(base + "/orders/\(servedID)/cancel").status == 409)
        #expect(try await HTTP.get(base + "/orders/" + servedID).json["status"] as? String == "CANCELLED")

        // Metrics: the library's figures and the service's own, in Prometheus' text format.
        let metrics = try await HTTP.get(base + "/metrics")
        #expect(metrics.status == 200)
        for name in [#"rabbitmq_outbox_depth{relay="order-service"}"#, "orders_placed_total 2", "rabbitmq_client_published_total"] {
            #expect(metrics.text.contains(name), "no \(name) in /metrics")
        }
        let inventoryMetrics = try await HTTP.get(inventory.baseURL + "/metrics")
        #expect(inventoryMetrics.text.contains(#"rabbitmq_outbox_published_total{relay="inventory-daemon"} 2"#), "\(inventoryMetrics.text)")
        #expect(try await HTTP.get(inventory.baseURL + "/health").status == 200)

        // The cancellation released the stock: the inventory ends with nothing reserved.
        #expect(await Self.stop(service) == 0, "\(service.process.output.suffix(2000))")
        #expect(await Self.stop(inventory) == 0, "\(inventory.process.output.suffix(2000))")
        #expect(inventory.process.output.contains("stopped cleanly; 0 units reserved"), "\(inventory.process.output.suffix(2000))")
        try await setup.cleanUp()
    }

    /// What the placing task saw.
    struct Placed: Sendable {
        /// Order id → index, for every order answered 202.
        var accepted: [String: Int] = [:]
        /// Cancellations answered 202.
        var cancelled: Set<String> = []
        /// Requests that failed (connection refused or reset while a service was down) and were
        /// sent again.
        var failedRequests = 0
    }

    @Test func ordersSurviveKilledServicesAndClosedConnectionsOnSQLite() async throws {
        let setup = try Setup()
        try await ServiceDatabase.withTwo("sqlite", in: setup.folder) { orders, inventory in
            try await Self.chaos(setup, orders, inventory)
        }
    }

    @Test(.enabled(if: TestPostgres.reachableOrRequired, "needs PostgreSQL (scripts/postgres); CI and AMQP_REQUIRE_BROKER=1 make it fail instead"))
    func ordersSurviveKilledServicesAndClosedConnectionsOnPostgreSQL() async throws {
        let setup = try Setup()
        try await ServiceDatabase.withTwo("postgres", in: setup.folder) { orders, inventory in
            try await Self.chaos(setup, orders, inventory)
        }
    }

    /// 300 orders over HTTP while the order service is killed twice, the inventory once, and
    /// the broker closes every connection of both once; then every order must be settled the
    /// same way in both databases.
    static func chaos(_ setup: Setup, _ ordersDatabase: ServiceDatabase, _ inventoryDatabase: ServiceDatabase) async throws {
        let orders = 300
        // About two thirds of the demand: 60 orders per SKU of 1 to 3 units, 80 units each.
        let stock = (0..<5).map { "SKU-\($0)=80" }.joined(separator: ",")
        var inventory = try await setup.startInventory(stock: stock, database: inventoryDatabase.argument)
        var service = try await setup.startOrderService(database: ordersDatabase.argument)
        #expect(try await service.waitUntilHealthy(), "\(service.process.output.suffix(2000))")
        var finished: [ServiceProcess] = []
        let current = Locked(service.baseURL)
        let placed = Locked(Placed())

        // One client placing orders (every tenth cancelled right after), sending a request
        // again while the service is down.
        let placing = Task {
            func send(_ path: String, _ body: String = "") async -> HTTP.Reply {
                while true {
                    if let reply = try? await HTTP.post(current.withLock { $0 } + path, body), reply.status < 500 {
                        return reply
                    }
                    placed.withLock { $0.failedRequests += 1 }
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
            for index in 0..<orders {
                let body = #"{"customerId": "c-\#(index)", "items": [{"sku": "SKU-\#(index % 5)", "quantity": \#(1 + index % 3)}]}"#
                let reply = await send("/orders", body)
                guard reply.status == 202, let id = reply.json["orderId"] as? String else {
                    Issue.record("POST /orders answered \(reply.status): \(reply.text)")
                    continue
                }
                placed.withLock { $0.accepted[id] = index }
                if index % 10 == 9 {
                    let cancel = await send("/orders/\(id)/cancel")
                    if cancel.status == 202 { placed.withLock { _ = $0.cancelled.insert(id) } }
                }
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        func waitUntilPlaced(_ count: Int) async throws {
            let deadline = ContinuousClock.now + .seconds(240)
            while placed.withLock({ $0.accepted.count }) < count, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
        }

        // The order service killed twice, the inventory once, and every connection of both
        // closed by the broker once.
        var kills = 0
        for (count, victim) in [(60, "orders"), (120, "inventory"), (180, "orders")] {
            try await waitUntilPlaced(count)
            if victim == "orders" {
                service.process.signal(SIGKILL)
                _ = await service.process.waitForExit()
                finished.append(service)
                service = try await setup.startOrderService(database: ordersDatabase.argument)
                current.withLock { $0 = service.baseURL }
            } else {
                inventory.process.signal(SIGKILL)
                _ = await inventory.process.waitForExit()
                finished.append(inventory)
                inventory = try await setup.startInventory(stock: stock, database: inventoryDatabase.argument)
            }
            kills += 1
        }
        try await waitUntilPlaced(240)
        let forceClosed = try await TestBroker.forceCloseAll(connectionsNamedLike: setup.exchange, reason: "chaos test")
        await placing.value
        let result = placed.withLock { $0 }

        // Every order reaches its final status, and both outboxes empty.
        func settled() async throws -> Bool {
            let pending = try await ordersDatabase.integer("SELECT COUNT(*) FROM orders WHERE status = 'PENDING'")
            let outboxes =
                try await ordersDatabase.integer("SELECT COUNT(*) FROM rabbitmq_outbox")
                + (try await inventoryDatabase.integer("SELECT COUNT(*) FROM rabbitmq_outbox"))
            let cancelledAtInventory = try await inventoryDatabase.integer("SELECT COUNT(*) FROM orders WHERE status = 'CANCELLED'")
            let cancelledHere = try await ordersDatabase.integer("SELECT COUNT(*) FROM orders WHERE status = 'CANCELLED'")
            return pending == 0 && outboxes == 0 && cancelledAtInventory == cancelledHere
        }
        let deadline = ContinuousClock.now + .seconds(180)
        while try await !settled(), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(100)) }
        #expect(try await settled(), "orders still pending or events still in an outbox after three minutes")

        // The two services agree on every order, the stock never went below zero and no order
        // reserved anything twice.
        func statuses(_ database: ServiceDatabase) async throws -> [String: String] {
            var statuses: [String: String] = [:]
            for row in try await database.rows("SELECT order_id, status FROM orders") {
                if let id = row[0], let status = row[1] { statuses[id] = status }
            }
            return statuses
        }
        let orderStatuses = try await statuses(ordersDatabase)
        let inventoryStatuses = try await statuses(inventoryDatabase)
        #expect(Set(result.accepted.keys).isSubset(of: Set(orderStatuses.keys)), "an order answered 202 is missing")
        let agreeing = ["CONFIRMED": "RESERVED", "REJECTED": "REJECTED", "CANCELLED": "CANCELLED"]
        let disagreements = orderStatuses.filter { agreeing[$0.value] != inventoryStatuses[$0.key] }
        #expect(
            disagreements.isEmpty,
            "order service and inventory disagree: \(disagreements.prefix(5)), inventory \(disagreements.keys.prefix(5).map { inventoryStatuses[$0] ?? "none" })")
        for id in result.cancelled { #expect(orderStatuses[id] == "CANCELLED", "\(id) was cancelled with a 202") }
        for row in try await inventoryDatabase.rows("SELECT sku, CAST(available AS TEXT), CAST(reserved AS TEXT) FROM stock") {
            let sku = row[0] ?? ""
            let available = Int(row[1] ?? "") ?? -1
            let reserved = Int(row[2] ?? "") ?? -1
            let moved = try await inventoryDatabase.integer(
                "SELECT CAST(COALESCE(SUM(quantity), 0) AS TEXT) FROM stock_movements WHERE sku = '\(sku)'")
            #expect(available >= 0, "\(sku) went below zero: \(available)")
            #expect(available + reserved == 80 && reserved == moved, "\(sku): available \(available), reserved \(reserved), ledger \(moved)")
        }
        let twice = try await inventoryDatabase.integer(
            """
            SELECT COUNT(*) FROM (SELECT order_id, sku FROM stock_movements WHERE event_type = 'OrderCreated'
            GROUP BY order_id, sku HAVING COUNT(*) > 1) AS repeated
            """)
        #expect(twice == 0, "\(twice) order lines reserved twice")
        let left = try await setup.messagesLeft()
        #expect(left.values.allSatisfy { $0 == 0 }, "messages left: \(left)")

        // Figures: from 202 to the final status (the order's two timestamps), duplicates the
        // inboxes skipped.
        let latencies = try await ordersDatabase.rows(
            "SELECT CAST(updated_at - created_at AS TEXT) FROM orders WHERE status IN ('CONFIRMED', 'REJECTED')"
        ).compactMap { $0[0].flatMap { Int64($0) } }.sorted()
        #expect(await Self.stop(service) == 0, "\(service.process.output.suffix(2000))")
        #expect(await Self.stop(inventory) == 0, "\(inventory.process.output.suffix(2000))")
        finished += [service, inventory]
        let outputs = finished.map { ($0.name, $0.process.output) }
        func count(_ text: String, in program: String) -> Int {
            outputs.filter { $0.0 == program }.map { $0.1.components(separatedBy: text).count - 1 }.reduce(0, +)
        }
        let skippedByInventory = count("duplicate ", in: "inventory-daemon")
        let skippedByOrders = count("duplicate ", in: "order-service")
        let republished = count("(published again)", in: "inventory-daemon") + count("(published again)", in: "order-service")
        func percentile(_ p: Double) -> Int64 { latencies.isEmpty ? -1 : latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
        let counts = Dictionary(grouping: orderStatuses.values, by: { $0 }).mapValues(\.count)
        print(
            "FIGURES http chaos (\(ordersDatabase.kind)): \(orders) orders placed over HTTP (\(result.accepted.count) answered 202, \(result.failedRequests) requests sent again "
                + "while a service was down), \(kills) kill -9 (order service twice, inventory once), \(forceClosed) connections closed by the broker; "
                + "final: \(counts["CONFIRMED"] ?? 0) CONFIRMED, \(counts["REJECTED"] ?? 0) REJECTED, \(counts["CANCELLED"] ?? 0) CANCELLED, 0 PENDING; "
                + "duplicates skipped by the inventory's inbox \(skippedByInventory), by the order service's \(skippedByOrders) "
                + "(\(republished) of them published again by a relay after a crash, the rest redelivered by the broker); "
                + "202 to final status: median \(percentile(0.5)) ms, p99 \(percentile(0.99)) ms")
        for service in finished { service.process.removeOutput() }
        try await setup.cleanUp()
    }

    @Test func healthIsUnavailableUntilTheBrokerAnswers() async throws {
        let setup = try Setup()
        let port = try TCPProbe.closedPort()
        let service = try await setup.startOrderService(url: "amqp://guest:guest@127.0.0.1:\(port)/%2f")
        let health = try await HTTP.get(service.baseURL + "/health")
        #expect(health.status == 503, "\(health.text)")
        #expect((health.json["checks"] as? [String: Bool])?["broker"] == false, "\(health.text)")
        #expect((health.json["checks"] as? [String: Bool])?["database"] == true, "\(health.text)")
        // Orders are taken meanwhile: the outbox keeps them until the broker is back.
        let placed = try await HTTP.post(service.baseURL + "/orders", #"{"customerId": "c", "items": [{"sku": "A", "quantity": 1}]}"#)
        #expect(placed.status == 202)
        // SIGTERM ends the connection attempts: a clean exit, long before they would give up.
        #expect(await Self.stop(service) == 0, "\(service.process.output.suffix(2000))")
        try? FileManager.default.removeItem(at: setup.folder)
    }
}
