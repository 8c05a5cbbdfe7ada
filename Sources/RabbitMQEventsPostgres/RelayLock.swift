import Logging
import PostgresNIO
import RabbitMQ

/// The outbox relay's exclusive right to publish, as a PostgreSQL session-level advisory lock:
/// taken on a connection of its own and held as long as that connection lives. The server
/// releases it when the connection closes, so a relay killed with its process hands over at once
/// (a lease in a table would make the others wait for it to expire).
///
/// The holding connection is checked every second; when it fails the lock counts as lost and the
/// relay stops publishing at its next claim.
package final class RelayLock: Sendable {
    /// The advisory lock's key: one relay per database publishes.
    package static let key: Int64 = 7_305_119_860

    private struct Holding {
        /// Tells this holding from a later one of the same owner.
        let number: UInt64
        /// Set to end the holding (the relay leaves).
        let releasing: Locked<Bool>
    }

    private let counter = Locked<UInt64>(0)

    private let holdings = Locked<[String: Holding]>([:])

    /// Whether `owner` holds the lock, taking it if it is free. Returns at once when `owner`
    /// holds it already.
    func hold(_ owner: String, client: PostgresClient, logger: Logger) async throws -> Bool {
        if holdings.withLock({ $0[owner] != nil }) { return true }
        let releasing = Locked(false)
        let number = counter.withLock { counter in
            counter += 1
            return counter
        }
        let (outcomes, outcome) = AsyncStream.makeStream(of: Bool.self)
        Task {
            do {
                try await client.withConnection { connection in
                    let taken = try await connection.query("SELECT pg_try_advisory_lock(\(Self.key))", logger: logger)
                        .collect().first?.decode(Bool.self) ?? false
                    guard taken else {
                        outcome.yield(false)
                        return
                    }
                    self.holdings.withLock { $0[owner] = Holding(number: number, releasing: releasing) }
                    outcome.yield(true)
                    do {
                        // Hold: the session keeps the lock. Check the connection every second.
                        var ticks = 0
                        while !releasing.withLock({ $0 }) {
                            try await Task.sleep(for: .milliseconds(250))
                            ticks += 1
                            if ticks % 4 == 0 { try await connection.query("SELECT 1", logger: logger) }
                        }
                        try await connection.query("SELECT pg_advisory_unlock(\(Self.key))", logger: logger)
                    } catch {
                        // A failed query need not mean a closed connection, and a session that
                        // still held the lock would go back to the pool with it (and answer
                        // the next pg_try_advisory_lock with true: the lock is re-entrant).
                        // Closed, the session ends and the server releases the lock.
                        try? await connection.close()
                        throw error
                    }
                }
            } catch {
                logger.warning("the outbox relay's lock connection failed; publishing stops until the lock is taken again", metadata: ["error": "\(error)"])
            }
            self.holdings.withLock { holdings in
                if holdings[owner]?.number == number { holdings[owner] = nil }
            }
            outcome.yield(false)
            outcome.finish()
        }
        for await taken in outcomes { return taken }
        return false
    }

    /// Ends `owner`'s holding: the lock is released within a quarter of a second.
    func release(_ owner: String) {
        let holding = holdings.withLock { $0.removeValue(forKey: owner) }
        holding?.releasing.withLock { $0 = true }
    }
}
