import Foundation
import RabbitMQ

#if canImport(Glibc)
import Glibc
#endif

/// A TCP proxy on 127.0.0.1 between the client and the broker that a test can stall (no bytes
/// either way, sockets kept open: a hung peer), cut (both sockets closed: a dead one), or make
/// the client's side drop while the broker's side stays open and silent (a connection the
/// broker does not know is gone until its heartbeats time out).
// @unchecked: the mutable mode and stop flag are read and written only while holding `lock`;
// everything else is immutable.
final class TCPProxy: @unchecked Sendable {
    enum Mode: Sendable { case forward, stall, cut }

    /// Connections accepted up to this count drop their client side and keep the broker's.
    private var _abandonUpTo = 0

    let port: Int
    private let listener: Int32
    private let targetPort: Int
    private let lock = NSLock()
    private var _mode = Mode.forward
    private var _stopped = false
    private var _accepted = 0
    /// For the next accepted connection: cut it after this many bytes from the broker.
    private var _nextBudget: Int?

    init(targetPort: Int) throws {
        self.targetPort = targetPort
        (listener, port) = try TCPProbe.listenOnLoopback()
        startThread { [self] in acceptLoop() }
    }

    /// Stops forwarding in both directions, keeping the sockets open.
    func stall() { lock.withLock { _mode = .stall } }
    /// Closes every proxied connection, and every new one at once (a refused reconnect).
    func cut() { lock.withLock { _mode = .cut } }
    /// Forwards again (new connections too) after a stall or a cut.
    func forward() { lock.withLock { _mode = .forward } }
    /// Cuts the next connection accepted once the broker has sent it `bytes` bytes: a
    /// connection that dies in the middle of what it was doing (a recovery, say).
    func cutNextConnection(afterBrokerBytes bytes: Int) { lock.withLock { _nextBudget = bytes } }
    /// Closes the client's side of every connection so far and keeps the broker's side open,
    /// silent, until the proxy stops; new connections are forwarded.
    func dropClientsKeepingBrokerSide() { lock.withLock { _abandonUpTo = _accepted } }
    /// How many connections the proxy has accepted.
    var acceptedConnections: Int { lock.withLock { _accepted } }
    /// Ends the proxy (its threads exit within 100 ms).
    func stop() {
        lock.withLock { _stopped = true }
        cut()
    }

    private var isStopped: Bool { lock.withLock { _stopped } }
    private var currentMode: Mode { lock.withLock { _mode } }

    private func acceptLoop() {
        defer { close(listener) }
        while !isStopped {
            var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0)]
            guard poll(&fds, 1, 100) > 0 else { continue }
            let client = accept(listener, nil, nil)
            guard client >= 0 else { continue }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var address = Self.loopback(port: targetPort)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
                }
            }
            guard connected else {
                close(client)
                close(upstream)
                continue
            }
            let (budget, number) = lock.withLock {
                _accepted += 1
                defer { _nextBudget = nil }
                return (_nextBudget, _accepted)
            }
            startThread { [self] in pump(client, upstream, brokerByteBudget: budget, number: number) }
        }
    }

    private func pump(_ a: Int32, _ b: Int32, brokerByteBudget: Int?, number: Int) {
        var budget = brokerByteBudget ?? .max
        defer {
            shutdown(a, Int32(SHUT_RDWR))
            shutdown(b, Int32(SHUT_RDWR))
            close(a)
            close(b)
        }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            if lock.withLock({ number <= _abandonUpTo }) {
                // The client's side goes; the broker's stays open and hears nothing more.
                shutdown(a, Int32(SHUT_RDWR))
                while !isStopped { usleep(50_000) }
                return
            }
            switch currentMode {
            case .cut: return
            case .stall:
                usleep(20_000)
                continue
            case .forward: break
            }
            var fds = [pollfd(fd: a, events: Int16(POLLIN), revents: 0), pollfd(fd: b, events: Int16(POLLIN), revents: 0)]
            guard poll(&fds, 2, 50) > 0 else { continue }
            guard currentMode == .forward else { continue }
            for (from, to) in [(0, b), (1, a)] where fds[from].revents != 0 {
                let count = read(fds[from].fd, &buffer, from == 1 ? min(buffer.count, budget) : buffer.count)
                guard count > 0 else { return }
                if from == 1 { budget -= count }
                var sent = 0
                while sent < count {
                    // MSG_NOSIGNAL: a peer that closed first must not kill the test process with SIGPIPE.
                    let written = buffer.withUnsafeBytes { Glibc.send(to, $0.baseAddress! + sent, count - sent, Int32(MSG_NOSIGNAL)) }
                    guard written > 0 else { return }
                    sent += written
                }
                if budget <= 0 { return }
            }
        }
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return address
    }

    private func startThread(_ body: @escaping @Sendable () -> Void) {
        Thread.detachNewThread(body)
    }
}

extension TestBroker {
    /// A configuration for the shared broker that reaches it through a new proxy the test
    /// controls (stop the proxy when done).
    static func configurationThroughProxy(
        _ name: String = #function, heartbeat: UInt16 = 60
    ) throws -> (AMQPConnection.Configuration, TCPProxy) {
        var configuration = try configuration(name, heartbeat: heartbeat)
        let proxy = try TCPProxy(targetPort: configuration.port)
        configuration.host = "127.0.0.1"
        configuration.port = proxy.port
        return (configuration, proxy)
    }
}
