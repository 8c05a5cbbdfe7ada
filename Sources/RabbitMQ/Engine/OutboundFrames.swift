internal import CRabbitMQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Frames the engine encodes itself, so that a batch of publishes and acknowledgements leaves
/// in a few `send` calls instead of one to three per message.
///
/// `amqp_basic_publish` writes a message with three `send` calls (method, content header, body)
/// and `amqp_basic_ack` an acknowledgement with one; at full speed those system calls are most
/// of a client's CPU. The engine appends a batch's frames here instead and writes them at once.
/// The methods and properties are encoded by librabbitmq's own `amqp_encode_method` and
/// `amqp_encode_properties`, into the frame layout of AMQP 0-9-1 §4.2.3 (type, channel, size,
/// payload, `0xCE`), so the bytes are the ones librabbitmq would have written.
///
/// Only for plain TCP, where the socket is a file descriptor the engine may write to; over TLS
/// every frame goes through librabbitmq's socket as before. And only between two of
/// librabbitmq's own writes: a method, heartbeat or close librabbitmq writes must never overtake
/// frames held here, so the engine writes the buffer out at the end of every batch it filled,
/// and before handing a message to librabbitmq.
///
/// Confined to the connection's thread like the rest of the connection's C state.
final class OutboundFrames {
    /// Bodies up to this size are copied into the buffer; larger ones are written by
    /// librabbitmq, whose system calls are then small beside the copy.
    static let largestCopiedBody = 64 * 1024
    /// Once the buffer holds this much, the engine writes it out before appending more.
    static let writeThreshold = 128 * 1024

    /// AMQP 0-9-1 frame types, and the octet that ends every frame.
    private enum FrameType: UInt8 {
        case method = 1
        case header = 2
        case body = 3
    }
    private static let frameEnd: UInt8 = 0xCE
    /// Type (1), channel (2), payload size (4).
    private static let headerSize = 7

    private var storage: UnsafeMutableRawPointer
    private var capacity: Int
    /// The bytes appended and not yet written.
    private(set) var count = 0

    init(capacity: Int = 256 * 1024) {
        self.capacity = capacity
        storage = .allocate(byteCount: capacity, alignment: 8)
    }

    deinit {
        storage.deallocate()
    }

    var isEmpty: Bool { count == 0 }

    /// Drops what was appended and not written (the connection it was for is gone).
    func removeAll() {
        count = 0
    }

    /// The bytes appended and not yet written, for tests.
    var bytes: [UInt8] { Array(UnsafeRawBufferPointer(start: storage, count: count)) }

    // MARK: Encoding

    /// Appends a method frame. Returns `AMQP_STATUS_OK`, or librabbitmq's status when the
    /// method does not encode into one frame of `frameMax` bytes; nothing is appended then.
    func appendMethod(
        _ id: amqp_method_number_t, _ decoded: UnsafeMutableRawPointer, channel: UInt16, frameMax: Int
    ) -> Int32 {
        let start = count
        let payloadLimit = frameMax - Self.headerSize - 1
        reserve(frameMax)
        storeFrameHeader(.method, channel: channel, at: start)
        storeBigEndian(id, at: start + Self.headerSize)
        let encoded = amqp_encode_method(
            id, decoded, amqp_bytes_t(len: payloadLimit - 4, bytes: storage + start + Self.headerSize + 4))
        guard encoded >= 0 else { return encoded }
        finishFrame(startingAt: start, payloadSize: 4 + Int(encoded))
        return AMQP_STATUS_OK.rawValue
    }

    /// Appends a whole message: `basic.publish`, its content header, and the body in frames of
    /// at most `frameMax` bytes (none for an empty body, as librabbitmq does). Returns
    /// `AMQP_STATUS_OK`, or librabbitmq's status when the method or properties do not encode
    /// (a name or property too long, a header table larger than a frame); nothing of the
    /// message is appended then.
    func appendPublish(
        _ method: inout amqp_basic_publish_t, properties: inout amqp_basic_properties_t, body: UnsafeRawBufferPointer,
        channel: UInt16, frameMax: Int
    ) -> Int32 {
        let start = count
        let methodStatus = appendMethod(AMQP_BASIC_PUBLISH_METHOD, &method, channel: channel, frameMax: frameMax)
        guard methodStatus == AMQP_STATUS_OK.rawValue else { return methodStatus }
        // Content header: class (2), weight (2, always 0), body size (8), then the properties.
        let headerStart = count
        let payloadLimit = frameMax - Self.headerSize - 1
        reserve(frameMax)
        storeFrameHeader(.header, channel: channel, at: headerStart)
        storeBigEndian(UInt16(AMQP_BASIC_CLASS), at: headerStart + Self.headerSize)
        storeBigEndian(UInt16(0), at: headerStart + Self.headerSize + 2)
        storeBigEndian(UInt64(body.count), at: headerStart + Self.headerSize + 4)
        let encoded = withUnsafeMutablePointer(to: &properties) { properties in
            amqp_encode_properties(
                UInt16(AMQP_BASIC_CLASS), properties,
                amqp_bytes_t(len: payloadLimit - 12, bytes: storage + headerStart + Self.headerSize + 12))
        }
        guard encoded >= 0 else {
            count = start
            return encoded
        }
        finishFrame(startingAt: headerStart, payloadSize: 12 + Int(encoded))
        // Body frames.
        var offset = 0
        while offset < body.count {
            let size = min(body.count - offset, payloadLimit)
            let frameStart = count
            reserve(Self.headerSize + size + 1)
            storeFrameHeader(.body, channel: channel, at: frameStart)
            (storage + frameStart + Self.headerSize).copyMemory(from: body.baseAddress! + offset, byteCount: size)
            finishFrame(startingAt: frameStart, payloadSize: size)
            offset += size
        }
        return AMQP_STATUS_OK.rawValue
    }

    // MARK: Writing

    /// Writes everything appended to `socket` and empties the buffer. Waits for room in the
    /// socket's send buffer as librabbitmq does (indefinitely: the stall watchdog shuts down a
    /// socket whose peer stopped reading, which ends the wait). Returns `AMQP_STATUS_OK`, or
    /// `AMQP_STATUS_SOCKET_ERROR` when the socket failed; what was written of the buffer then is
    /// unknown.
    func write(to socket: Int32) -> Int32 {
        defer { count = 0 }
        #if os(Linux)
        let flags = Int32(MSG_NOSIGNAL)
        #else
        let flags: Int32 = 0  // librabbitmq sets SO_NOSIGPIPE on the socket.
        #endif
        var written = 0
        while written < count {
            let sent = send(socket, storage + written, count - written, flags)
            if sent > 0 {
                written += sent
                continue
            }
            switch sent < 0 ? errno : 0 {
            case EINTR:
                continue
            case EAGAIN, EWOULDBLOCK:
                var descriptor = pollfd(fd: socket, events: Int16(POLLOUT), revents: 0)
                if poll(&descriptor, 1, -1) < 0, errno != EINTR { return AMQP_STATUS_SOCKET_ERROR.rawValue }
            default:
                return AMQP_STATUS_SOCKET_ERROR.rawValue
            }
        }
        return AMQP_STATUS_OK.rawValue
    }

    // MARK: Private

    /// Makes room for `bytes` more bytes after `count`.
    private func reserve(_ bytes: Int) {
        guard count + bytes > capacity else { return }
        let newCapacity = max(capacity * 2, count + bytes)
        let newStorage = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 8)
        newStorage.copyMemory(from: storage, byteCount: count)
        storage.deallocate()
        storage = newStorage
        capacity = newCapacity
    }

    private func storeFrameHeader(_ type: FrameType, channel: UInt16, at offset: Int) {
        storage.storeBytes(of: type.rawValue, toByteOffset: offset, as: UInt8.self)
        storeBigEndian(channel, at: offset + 1)
    }

    /// Writes the frame's payload size and end octet, and counts the frame in.
    private func finishFrame(startingAt start: Int, payloadSize: Int) {
        storeBigEndian(UInt32(payloadSize), at: start + 3)
        storage.storeBytes(of: Self.frameEnd, toByteOffset: start + Self.headerSize + payloadSize, as: UInt8.self)
        count = start + Self.headerSize + payloadSize + 1
    }

    private func storeBigEndian<Value: FixedWidthInteger>(_ value: Value, at offset: Int) {
        storage.storeBytes(of: value.bigEndian, toByteOffset: offset, as: Value.self)
    }
}
