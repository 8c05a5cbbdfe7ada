import Testing

@testable import RabbitMQ

#if os(Linux)
import Glibc

@Suite("Write coalescing", .watchdog)
struct WriteCoalescerTests {
    private func isCorked(_ socket: Int32) -> Bool {
        var value: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        _ = getsockopt(socket, Int32(IPPROTO_TCP), TCP_CORK, &value, &size)
        return value != 0
    }

    @Test func aBurstIsCorkedFromItsSecondWriteUntilItIsFlushed() throws {
        let (listener, port) = try TCPProbe.listenOnLoopback()
        defer { close(listener) }
        let client = try #require(TCPProbe.connectedSocket(host: "127.0.0.1", port: port), "a loopback connection")
        defer { close(client) }
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
