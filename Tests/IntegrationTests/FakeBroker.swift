import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A fake AMQP server on 127.0.0.1 that completes the connection handshake (or not) and then
/// misbehaves as the test scripts it: the hostile peer a client library must survive.
// @unchecked: `listener` and `port` are immutable; each accepted connection is served on a
// thread of its own and touches only its own socket; `stopped` is read and written under `lock`.
final class FakeBroker: @unchecked Sendable {
    /// One accepted client connection, driven from the server's side.
    struct Session {
        let socket: Int32

        /// Sends raw bytes.
        func send(_ bytes: [UInt8]) {
            var sent = 0
            while sent < bytes.count {
                // MSG_NOSIGNAL: a client that closed first must not kill the test process with SIGPIPE.
                let written = bytes.withUnsafeBytes { Glibc.send(socket, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
                guard written > 0 else { return }
                sent += written
            }
        }

        /// Reads exactly `count` bytes; `nil` when the client closed first.
        func read(_ count: Int) -> [UInt8]? {
            var bytes = [UInt8](repeating: 0, count: count)
            var received = 0
            while received < count {
                let got = bytes.withUnsafeMutableBytes { Glibc.read(socket, $0.baseAddress! + received, count - received) }
                guard got > 0 else { return nil }
                received += got
            }
            return bytes
        }

        /// Reads one whole frame; `nil` when the client closed first.
        func readWholeFrame() -> (type: UInt8, channel: UInt16, payload: [UInt8])? {
            guard let header = read(7) else { return nil }
            let size = Int(header[3]) << 24 | Int(header[4]) << 16 | Int(header[5]) << 8 | Int(header[6])
            guard let payload = read(size + 1) else { return nil }
            return (header[0], UInt16(header[1]) << 8 | UInt16(header[2]), Array(payload.dropLast()))
        }

        /// Reads one frame and returns its (class, method) when it is a method frame.
        @discardableResult
        func readFrame() -> (type: UInt8, classID: UInt16, methodID: UInt16)? {
            guard let (type, _, payload) = readWholeFrame() else { return nil }
            guard type == 1, payload.count >= 4 else { return (type, 0, 0) }
            return (1, UInt16(payload[0]) << 8 | UInt16(payload[1]), UInt16(payload[2]) << 8 | UInt16(payload[3]))
        }

        /// The server's side of the handshake: start, tune, open-ok; returns false if the
        /// client went away.
        func handshake(frameMax: UInt32 = 131_072) -> Bool {
            guard read(8) != nil else { return false }  // "AMQP" 0 0 9 1
            send(Frame.method(channel: 0, classID: 10, methodID: 10, arguments:
                [0, 9] + Frame.long(0) + Frame.longString("PLAIN") + Frame.longString("en_US")))
            guard readFrame() != nil else { return false }  // start-ok
            send(Frame.method(channel: 0, classID: 10, methodID: 30, arguments:
                Frame.short(2047) + Frame.long(frameMax) + Frame.short(0)))
            guard readFrame() != nil, readFrame() != nil else { return false }  // tune-ok, open
            send(Frame.method(channel: 0, classID: 10, methodID: 41, arguments: [0]))
            return true
        }
    }

    /// Encoders for the frames the scripts send.
    enum Frame {
        static func short(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xFF)] }
        static func long(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8((value >> (24 - 8 * $0)) & 0xFF) } }
        static func longString(_ text: String) -> [UInt8] { long(UInt32(text.utf8.count)) + Array(text.utf8) }
        static func shortString(_ text: String) -> [UInt8] { [UInt8(text.utf8.count)] + Array(text.utf8) }

        static func raw(type: UInt8, channel: UInt16, payload: [UInt8]) -> [UInt8] {
            [type] + short(channel) + long(UInt32(payload.count)) + payload + [0xCE]
        }

        static func method(channel: UInt16, classID: UInt16, methodID: UInt16, arguments: [UInt8]) -> [UInt8] {
            raw(type: 1, channel: channel, payload: short(classID) + short(methodID) + arguments)
        }
    }

    let port: Int
    private let listener: Int32
    private let lock = NSLock()
    private var stopped = false

    /// Listens and serves every accepted connection with `script` on a thread of its own; the
    /// connection is closed when the script returns.
    init(_ script: @escaping @Sendable (Session) -> Void) throws {
        let (listener, port) = try TCPProbe.listenOnLoopback()
        self.listener = listener
        self.port = port
        Thread.detachNewThread { [self] in
            defer { close(listener) }
            while !lock.withLock({ stopped }) {
                var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0)]
                guard poll(&fds, 1, 100) > 0 else { continue }
                let client = accept(listener, nil, nil)
                guard client >= 0 else { continue }
                _ = fcntl(client, F_SETFD, FD_CLOEXEC)
                Thread.detachNewThread {
                    script(Session(socket: client))
                    shutdown(client, Int32(SHUT_RDWR))
                    close(client)
                }
            }
        }
    }

    /// Stops accepting (within 100 ms).
    func stop() { lock.withLock { stopped = true } }
}
