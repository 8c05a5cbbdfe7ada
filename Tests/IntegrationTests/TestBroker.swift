import Foundation
import Logging
import RabbitMQ
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The broker the integration tests run against, and the means to act on it from outside.
///
/// `AMQP_URL` selects it (default: the local broker on 5672). `RABBITMQ_CTL` is the command that
/// runs rabbitmqctl against it (set by `scripts/broker env`; default `scripts/broker ctl`).
/// Without a reachable broker the suites are skipped, unless `CI` or `AMQP_REQUIRE_BROKER` is
/// set: then they run and fail.
enum TestBroker {
    static let url = ProcessInfo.processInfo.environment["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/%2f"

    static let isRequired: Bool = {
        let environment = ProcessInfo.processInfo.environment
        return ["CI", "AMQP_REQUIRE_BROKER"].contains { (environment[$0] ?? "").isEmpty == false && environment[$0] != "0" }
    }()

    /// Run the broker suites when a broker answers, or when one is required (so they fail).
    static let reachableOrRequired: Bool = isRequired || isReachable

    private static let isReachable: Bool = {
        guard let configuration = try? AMQPConnection.Configuration(url: url) else { return false }
        return TCPProbe.canConnect(host: configuration.host, port: configuration.port)
    }()

    static func configuration(
        _ name: String = #function, heartbeat: UInt16 = 60, file: String = #fileID
    ) throws -> AMQPConnection.Configuration {
        var configuration = try AMQPConnection.Configuration(url: url)
        configuration.connectionName = uniqueName(name)
        configuration.heartbeat = heartbeat
        configuration.connectionTimeout = .seconds(10)
        return configuration
    }

    static func connect(_ name: String = #function, heartbeat: UInt16 = 60) async throws -> AMQPConnection {
        try await AMQPConnection.open(configuration(name, heartbeat: heartbeat))
    }

    /// Declares a durable quorum queue through a connection of its own, trying again while the
    /// broker answers `cluster_not_formed`.
    ///
    /// RabbitMQ gives a new quorum queue's Raft group 5 s to elect its leader, then refuses the
    /// declaration with 541 and closes the connection. On a machine loaded far beyond its cores
    /// (a full parallel test run) a single-node election took longer (seen in CI: three tests'
    /// declarations at once). Tests that need a quorum queue declare it here first; their own
    /// declaration of the same queue afterwards is an idempotent check.
    static func declareQuorumQueue(_ queue: String, arguments: FieldTable = [:], attempts: Int = 6) async throws {
        var arguments = arguments
        arguments["x-queue-type"] = "quorum"
        for attempt in 1...attempts {
            let connection = try await connect("declareQuorumQueue")
            do {
                let channel = try await connection.openChannel()
                try await channel.queueDeclare(queue, durable: true, arguments: arguments)
                await connection.close()
                return
            } catch let error as AMQPError where error.replyCode == 541
                && (error.replyText ?? "").contains("cluster_not_formed") && attempt < attempts
            {
                await connection.close()
                Watchdog.note("quorum queue \(queue): cluster_not_formed, attempt \(attempt)")
                try await Task.sleep(for: .seconds(2))
            } catch {
                await connection.close()
                throw error
            }
        }
    }

    /// A name no other test (or earlier run) uses.
    static func uniqueName(_ base: String) -> String {
        let cleaned = base.filter { $0.isLetter || $0.isNumber }
        return "test-\(cleaned)-\(UUID().uuidString.prefix(8))"
    }

    /// Polls (bounded) until the queue holds `count` ready messages; publishing is asynchronous.
    static func waitForMessageCount(
        _ count: UInt32, in queue: String, on channel: AMQPChannel, within limit: Duration = .seconds(30)
    ) async throws -> Bool {
        Watchdog.note("waiting for \(count) messages in \(queue)")
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if try await channel.queueDeclare(queue, passive: true).messageCount == count { return true }
            try await Task.sleep(for: .milliseconds(10))
        }
        return false
    }

    // MARK: rabbitmqctl

    /// At most four rabbitmqctl processes at once, from all the tests together. Each is an
    /// Erlang VM that takes about a second of CPU to start: in a full run twenty were seen at
    /// once, each taking 20–30 s on two cores, and a node admits CLI tools on 11 distribution
    /// ports only (its RabbitMQ's default `RABBITMQ_CTL_DIST_PORT_RANGE`), beyond which they
    /// fail with `nodistribution`.
    static let cliSlots = CommandSlots(4)

    /// Runs rabbitmqctl with `arguments` and returns its standard output.
    @discardableResult
    static func ctl(_ arguments: [String]) async throws -> String {
        let command = ProcessInfo.processInfo.environment["RABBITMQ_CTL"] ?? (repositoryRoot + "/scripts/broker ctl")
        return try await cliSlots.run { try await shell(command, arguments) }
    }

    /// Runs `command` on a thread of its own: waiting for a process must not hold one of Swift's
    /// few cooperative threads (two on a two-core machine), or every other test stalls with it.
    @discardableResult
    static func shell(_ command: String, _ arguments: [String]) async throws -> String {
        Watchdog.note("running \(command) \(arguments.joined(separator: " "))")
        return try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result { try shellBlocking(command, arguments) })
            }
        }
    }

    /// Runs `command` (a shell command line) with `arguments` appended; returns standard output.
    ///
    /// posix_spawn and waitpid rather than Foundation's `Process`, whose `waitUntilExit` was seen
    /// to hang when several tests ran commands at once; output goes through files, so no pipe
    /// end can leak into a concurrently spawned broker and hold a reader open.
    @discardableResult
    static func shellBlocking(_ command: String, _ arguments: [String]) throws -> String {
        let child = try ChildProcess.start("/bin/sh", ["-c", command + " \"$@\"", "sh"] + arguments)
        let status = child.exitStatus()
        let text = child.output
        child.removeOutput()
        guard status == 0 else {
            throw CtlError(message: "\(command) \(arguments.joined(separator: " ")) failed: \(text)")
        }
        return text
    }

    struct CtlError: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }

    /// The broker-side process id of the connection with this client-provided name, if the
    /// broker lists it.
    static func connectionPid(named name: String, on broker: ThrowawayBroker? = nil) async throws -> String? {
        try await clientProperties(ofConnectionNamed: name, on: broker)?.pid
    }

    /// The broker's listing of the named connection's client properties (Erlang terms, as text).
    static func clientProperties(
        ofConnectionNamed name: String, on broker: ThrowawayBroker? = nil
    ) async throws -> (pid: String, properties: String)? {
        // RabbitMQ 3.10 has no user_provided_name column: find the name inside client_properties.
        let arguments = ["list_connections", "--quiet", "--no-table-headers", "pid", "client_properties"]
        let listing = try await run(arguments, on: broker)
        for line in listing.split(separator: "\n") where line.contains("{\"connection_name\",\"\(name)\"}") {
            let columns = line.split(separator: "\t", maxSplits: 1)
            if columns.count == 2 { return (String(columns[0]), String(columns[1])) }
        }
        return nil
    }

    /// Makes the broker close the named connection as an operator would (`close_connection`).
    static func forceClose(connectionNamed name: String, reason: String, on broker: ThrowawayBroker? = nil) async throws {
        guard let pid = try await connectionPid(named: name, on: broker) else {
            throw CtlError(message: "the broker lists no connection named \(name)")
        }
        try await run(["close_connection", pid, reason], on: broker)
    }

    /// Makes the broker close every connection whose client-provided name starts with `prefix`;
    /// returns how many.
    @discardableResult
    static func forceCloseAll(connectionsNamedLike prefix: String, reason: String) async throws -> Int {
        let arguments = ["list_connections", "--quiet", "--no-table-headers", "pid", "client_properties"]
        let listing = try await run(arguments, on: nil)
        var closed = 0
        for line in listing.split(separator: "\n") where line.contains("{\"connection_name\",\"\(prefix)") {
            guard let pid = line.split(separator: "\t", maxSplits: 1).first else { continue }
            try await run(["close_connection", String(pid), reason], on: nil)
            closed += 1
        }
        return closed
    }

    /// rabbitmqctl against `broker`, or the shared broker.
    @discardableResult
    private static func run(_ arguments: [String], on broker: ThrowawayBroker?) async throws -> String {
        if let broker { try await broker.ctl(arguments) } else { try await ctl(arguments) }
    }

    static var repositoryRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
    }
}

/// Plain sockets for tests: probing a port, and servers that misbehave on purpose.
enum TCPProbe {
    static func canConnect(host: String, port: Int) -> Bool {
        guard let fd = connectedSocket(host: host, port: port) else { return false }
        close(fd)
        return true
    }

    /// A TCP socket connected to `host:port` (close it when done), or nil when nothing accepts.
    static func connectedSocket(host: String, port: Int) -> Int32? {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let info = result else { return nil }
        defer { freeaddrinfo(result) }
        let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), info.pointee.ai_protocol)
        guard fd >= 0 else { return nil }
        guard Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
            close(fd)
            return nil
        }
        return fd
    }

    /// A loopback socket that listens but never accepts or answers: TCP connects (the kernel's
    /// backlog), then the AMQP handshake waits forever.
    final class SilentListener {
        let fd: Int32
        let port: Int

        init() throws {
            (fd, port) = try TCPProbe.listenOnLoopback()
        }

        deinit { close(fd) }
    }

    /// A listening socket on 127.0.0.1 and a port the kernel chose. Close-on-exec: a broker
    /// another test spawns meanwhile must not inherit it, or closing it would not end the
    /// connections.
    static func listenOnLoopback() throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var reuse: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let listening = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && listen(fd, 16) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard listening else {
            close(fd)
            throw TestBroker.CtlError(message: "could not listen on 127.0.0.1")
        }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    /// A loopback port with nothing listening on it (connections are refused).
    static func closedPort() throws -> Int {
        let listener = try SilentListener()
        return listener.port  // closed when the listener goes away
    }
}
