import Testing

@testable import RabbitMQ

#if os(Linux)
import Glibc

@Suite("Write coalescing")
struct WriteCoalescerTests {
    /// A TCP socket connected over loopback (to a listener of its own), and the listener.
    private func connectedSocket() throws -> (client: Int32, listener: Int32) {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(listener, pointer, length) == 0 && listen(listener, 1) == 0
                    && getsockname(listener, pointer, &length) == 0
            }
        }
        try #require(bound, "a loopback listener")
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, length) == 0 }
        }
        try #require(connected, "a connection to it")
        return (client, listener)
    }

    private func isCorked(_ socket: Int32) -> Bool {
        var value: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        _ = getsockopt(socket, Int32(IPPROTO_TCP), TCP_CORK, &value, &size)
        return value != 0
    }

    @Test func aBurstIsCorkedFromItsSecondWriteUntilItIsFlushed() throws {
        let (client, listener) = try connectedSocket()
        defer {
            close(client)
            close(listener)
        }
        var writes = WriteCoalescer(socket: client)
        writes.willWrite()
        #expect(!isCorked(client), "a lone write is never held back")
        writes.willWrite()
        #expect(isCorked(client))
        writes.willWrite()
        #expect(isCorked(client))
        writes.flush()
        #expect(!isCorked(client), "the end of the burst sends what was held back")
        writes.willWrite()
        #expect(!isCorked(client), "the next burst starts again with a lone write")
        writes.flush()
        #expect(!isCorked(client))
    }
}
#endif
