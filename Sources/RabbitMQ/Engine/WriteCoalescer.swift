#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Coalesces the frames written during one burst of the event loop's work (the jobs and commands
/// run between two polls, or one turn's reading) into as few TCP segments as the kernel can make.
///
/// librabbitmq writes every method and message with its own `send`, and the socket has
/// `TCP_NODELAY`, so each ack or publish would otherwise leave as its own segment: a full pass
/// through the network stack for the sender, and a wake-up for the broker's reader, per message.
/// From the second write of a burst on, the socket is corked (`TCP_CORK`): the kernel holds back
/// partial segments and sends full ones, and ``flush()`` releases the rest when the burst ends,
/// before the loop can wait. A burst with one write (a lone RPC, a latency-bound publish) is
/// never held back. The frames are the same, and as many (one `basic.ack` per `ack()`); only
/// their packaging changes.
///
/// Linux only; elsewhere every write goes out as it is made (macOS's `TCP_NOPUSH` is not
/// guaranteed to send what it held back when it is cleared).
struct WriteCoalescer {
    /// The connection's socket; -1 when there is none.
    private let socket: Int32
    private var writes = 0
    private var corked = false

    /// A coalescer for the connection's socket, or for none (-1).
    init(socket: Int32 = -1) {
        self.socket = socket
    }

    /// Called before each write of a frame: corks the socket at the burst's second write.
    mutating func willWrite() {
        writes += 1
        #if os(Linux)
        if writes == 2, socket >= 0 {
            corked = setCork(true)
        }
        #endif
    }

    /// Ends the burst: whatever the kernel holds back is sent now.
    mutating func flush() {
        writes = 0
        guard corked else { return }
        corked = false
        _ = setCork(false)
    }

    #if os(Linux)
    private func setCork(_ on: Bool) -> Bool {
        var value: Int32 = on ? 1 : 0
        return setsockopt(socket, Int32(IPPROTO_TCP), TCP_CORK, &value, socklen_t(MemoryLayout<Int32>.size)) == 0
    }
    #else
    private func setCork(_ on: Bool) -> Bool { false }
    #endif
}
