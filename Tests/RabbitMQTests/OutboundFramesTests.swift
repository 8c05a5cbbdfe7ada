internal import CRabbitMQ
import Testing
import WireFixtures

@testable import RabbitMQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A connected pair of stream sockets, closed on exec (tests here start other processes).
private func socketPair() throws -> [Int32] {
    var fds: [Int32] = [-1, -1]
    #if os(Linux)
    let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
    #else
    let type = SOCK_STREAM
    #endif
    try #require(socketpair(AF_UNIX, type, 0, &fds) == 0)
    return fds
}

/// The engine's own frame encoding against librabbitmq's: for every publish and
/// acknowledgement, the bytes ``OutboundFrames`` appends must be exactly the bytes librabbitmq
/// writes to its socket for the same call.
@Suite("Outbound frames")
struct OutboundFramesTests {
    /// A librabbitmq connection writing into one end of a socket pair, tuned to `frameMax`
    /// without a broker: what its calls write is read back from the other end.
    final class LibrabbitmqWriter {
        let state: amqp_connection_state_t
        let readEnd: Int32

        init(frameMax: Int32) throws {
            let fds = try socketPair()
            var size: Int32 = 1 << 20
            setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            state = try #require(amqp_new_connection())
            readEnd = fds[1]
            let socket = try #require(amqp_tcp_socket_new(state))
            amqp_tcp_socket_set_sockfd(socket, fds[0])
            // A fresh state expects the server's protocol header before it can be tuned.
            var header: [UInt8] = Array("AMQP".utf8) + [0, 0, 9, 1]
            var frame = amqp_frame_t()
            _ = header.withUnsafeMutableBytes {
                amqp_handle_input(state, amqp_bytes_t(len: $0.count, bytes: $0.baseAddress), &frame)
            }
            try #require(amqp_tune_connection(state, 0, frameMax, 0) == AMQP_STATUS_OK.rawValue)
        }

        deinit {
            amqp_destroy_connection(state)
            close(readEnd)
        }

        /// Everything written since the last call.
        func written() -> [UInt8] {
            var result: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = chunk.withUnsafeMutableBytes { recv(readEnd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                guard count > 0 else { return result }
                result += chunk.prefix(count)
            }
        }
    }

    struct Message: CustomTestStringConvertible, Sendable {
        let name: String
        let exchange: String
        let routingKey: String
        let mandatory: Bool
        let properties: [UInt8]
        let bodySize: Int
        let channel: UInt16

        var testDescription: String { name }
    }

    static let noProperties: [UInt8] = [0, 0]

    static let messages: [Message] = {
        var messages: [Message] = []
        for bodySize in [0, 1, 128, 4087, 4088, 4089, 8176, 10_000, 65_536] {
            messages.append(
                Message(
                    name: "body of \(bodySize) bytes", exchange: "", routingKey: "queue", mandatory: false,
                    properties: noProperties, bodySize: bodySize, channel: 1))
        }
        for hostile in HostileMessages.all where Librabbitmq.decodes(hostile) && hostile.properties.count < 3_500 {
            messages.append(
                Message(
                    name: "properties: \(hostile.name)", exchange: "orders", routingKey: "order.created", mandatory: true,
                    properties: hostile.properties, bodySize: 300, channel: 65_535))
        }
        messages.append(
            Message(
                name: "longest names", exchange: String(repeating: "e", count: 255),
                routingKey: String(repeating: "é", count: 127), mandatory: true, properties: noProperties, bodySize: 5,
                channel: 2))
        return messages
    }()

    @Test(arguments: messages, [Int32(4096), 131_072])
    func aPublishIsWhatLibrabbitmqWrites(_ message: Message, frameMax: Int32) throws {
        let librabbitmq = try LibrabbitmqWriter(frameMax: frameMax)
        let body = (0..<message.bodySize).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var exchange = Array(message.exchange.utf8)
        var routingKey = Array(message.routingKey.utf8)
        let frames = OutboundFrames(capacity: 64)
        try Librabbitmq.withDecodedProperties(message.properties) { decoded in
            var properties = decoded
            let status = exchange.withUnsafeMutableBytes { exchange in
                routingKey.withUnsafeMutableBytes { routingKey in
                    body.withUnsafeBytes { body in
                        let exchangeBytes = amqp_bytes_t(len: exchange.count, bytes: exchange.baseAddress)
                        let routingKeyBytes = amqp_bytes_t(len: routingKey.count, bytes: routingKey.baseAddress)
                        let theirs = amqp_basic_publish(
                            librabbitmq.state, message.channel, exchangeBytes, routingKeyBytes, message.mandatory ? 1 : 0, 0,
                            &properties, amqp_bytes_t(len: body.count, bytes: UnsafeMutableRawPointer(mutating: body.baseAddress)))
                        #expect(theirs == AMQP_STATUS_OK.rawValue)
                        var method = amqp_basic_publish_t(
                            ticket: 0, exchange: exchangeBytes, routing_key: routingKeyBytes,
                            mandatory: message.mandatory ? 1 : 0, immediate: 0)
                        return frames.appendPublish(
                            &method, properties: &properties, body: body, channel: message.channel, frameMax: Int(frameMax))
                    }
                }
            }
            #expect(status == AMQP_STATUS_OK.rawValue)
        }
        let expected = librabbitmq.written()
        #expect(expected.count > 0)
        #expect(frames.bytes == expected)
    }

    @Test func acknowledgementsAreWhatLibrabbitmqWrites() throws {
        let librabbitmq = try LibrabbitmqWriter(frameMax: 4096)
        let frames = OutboundFrames(capacity: 16)
        for (tag, multiple) in [(UInt64(1), false), (UInt64.max, true), (1 << 40, false)] {
            #expect(amqp_basic_ack(librabbitmq.state, 7, tag, multiple ? 1 : 0) == AMQP_STATUS_OK.rawValue)
            var ack = amqp_basic_ack_t(delivery_tag: tag, multiple: multiple ? 1 : 0)
            #expect(frames.appendMethod(AMQP_BASIC_ACK_METHOD, &ack, channel: 7, frameMax: 4096) == AMQP_STATUS_OK.rawValue)
            for requeue in [false, true] {
                #expect(amqp_basic_nack(librabbitmq.state, 7, tag, multiple ? 1 : 0, requeue ? 1 : 0) == AMQP_STATUS_OK.rawValue)
                var nack = amqp_basic_nack_t(delivery_tag: tag, multiple: multiple ? 1 : 0, requeue: requeue ? 1 : 0)
                #expect(frames.appendMethod(AMQP_BASIC_NACK_METHOD, &nack, channel: 7, frameMax: 4096) == AMQP_STATUS_OK.rawValue)
                #expect(amqp_basic_reject(librabbitmq.state, 7, tag, requeue ? 1 : 0) == AMQP_STATUS_OK.rawValue)
                var reject = amqp_basic_reject_t(delivery_tag: tag, requeue: requeue ? 1 : 0)
                #expect(
                    frames.appendMethod(AMQP_BASIC_REJECT_METHOD, &reject, channel: 7, frameMax: 4096) == AMQP_STATUS_OK.rawValue)
            }
        }
        #expect(frames.bytes == librabbitmq.written())
    }

    @Test func aMessageThatDoesNotEncodeLeavesNothingBehind() throws {
        let frames = OutboundFrames(capacity: 16)
        var ack = amqp_basic_ack_t(delivery_tag: 1, multiple: 0)
        #expect(frames.appendMethod(AMQP_BASIC_ACK_METHOD, &ack, channel: 1, frameMax: 4096) == AMQP_STATUS_OK.rawValue)
        let before = frames.bytes

        // A routing key over 255 bytes: the method does not encode.
        var longKey = [UInt8](repeating: 0x6B, count: 256)
        var empty = amqp_basic_properties_t()
        let tooLongKey = longKey.withUnsafeMutableBytes { key in
            var method = amqp_basic_publish_t(
                ticket: 0, exchange: amqp_bytes_t(len: 0, bytes: nil), routing_key: amqp_bytes_t(len: key.count, bytes: key.baseAddress),
                mandatory: 0, immediate: 0)
            return frames.appendPublish(&method, properties: &empty, body: UnsafeRawBufferPointer(start: nil, count: 0), channel: 1, frameMax: 4096)
        }
        #expect(tooLongKey != AMQP_STATUS_OK.rawValue)
        #expect(frames.bytes == before)

        // A content type over 255 bytes: the method encodes, the content header does not.
        var longType = [UInt8](repeating: 0x74, count: 300)
        let tooLongType = longType.withUnsafeMutableBytes { type in
            var properties = amqp_basic_properties_t()
            properties._flags = UInt32(AMQP_BASIC_CONTENT_TYPE_FLAG)
            properties.content_type = amqp_bytes_t(len: type.count, bytes: type.baseAddress)
            var method = amqp_basic_publish_t(
                ticket: 0, exchange: amqp_bytes_t(len: 0, bytes: nil), routing_key: amqp_bytes_t(len: 0, bytes: nil),
                mandatory: 0, immediate: 0)
            return [UInt8](repeating: 1, count: 10).withUnsafeBytes { body in
                frames.appendPublish(&method, properties: &properties, body: body, channel: 1, frameMax: 4096)
            }
        }
        #expect(tooLongType != AMQP_STATUS_OK.rawValue)
        #expect(frames.bytes == before)
    }

    @Test func writingSendsEveryByteAndEmptiesTheBuffer() async throws {
        let fds = try socketPair()
        defer { fds.forEach { close($0) } }
        #if canImport(Darwin)
        var one: Int32 = 1
        setsockopt(fds[0], SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
        #endif
        // Non-blocking with a small send buffer, as a busy TCP socket: the writer must wait for
        // room and go on, not drop or fail. A reader thread drains the other end meanwhile.
        _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
        var small: Int32 = 4096
        setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        let frames = OutboundFrames(capacity: 64)
        let body = (0..<60_000).map { UInt8(truncatingIfNeeded: $0) }
        var empty = amqp_basic_properties_t()
        for _ in 0..<20 {
            var method = amqp_basic_publish_t(
                ticket: 0, exchange: amqp_bytes_t(len: 0, bytes: nil), routing_key: amqp_bytes_t(len: 0, bytes: nil),
                mandatory: 0, immediate: 0)
            let status = body.withUnsafeBytes { frames.appendPublish(&method, properties: &empty, body: $0, channel: 1, frameMax: 131_072) }
            #expect(status == AMQP_STATUS_OK.rawValue)
        }
        let expected = frames.bytes
        let readEnd = fds[1]
        let reader = Task.detached { () -> [UInt8] in
            var received: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 8192)
            while received.count < expected.count {
                let count = chunk.withUnsafeMutableBytes { read(readEnd, $0.baseAddress, $0.count) }
                guard count > 0 else { break }
                received += chunk.prefix(count)
            }
            return received
        }
        #expect(frames.write(to: fds[0]) == AMQP_STATUS_OK.rawValue)
        #expect(frames.isEmpty)
        #expect(await reader.value == expected)

        // A socket whose peer is gone: an error, not a signal, and the buffer is emptied.
        // (shutdown, not only close: a process other tests start may hold a copy of the fd.)
        shutdown(fds[1], Int32(SHUT_RDWR))
        var ack = amqp_basic_ack_t(delivery_tag: 1, multiple: 0)
        _ = frames.appendMethod(AMQP_BASIC_ACK_METHOD, &ack, channel: 1, frameMax: 4096)
        #expect(frames.write(to: fds[0]) == AMQP_STATUS_SOCKET_ERROR.rawValue)
        #expect(frames.isEmpty)
    }
}
