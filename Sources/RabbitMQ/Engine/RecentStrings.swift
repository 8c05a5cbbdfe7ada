internal import CRabbitMQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The few strings a channel's deliveries repeat (exchange, routing key, consumer tag), so each
/// delivery reuses them instead of allocating new ones.
struct RecentStrings {
    private var strings: [String] = []

    /// The string for librabbitmq's bytes: a cached one if it is equal, else a new copy.
    mutating func string(_ bytes: amqp_bytes_t) -> String {
        let raw = UnsafeRawBufferPointer(bytes)
        for var string in strings where string.utf8.count == raw.count {
            // Native strings are contiguous UTF-8: compare the bytes at once.
            let equal = string.withUTF8 { utf8 in
                guard let cached = utf8.baseAddress, let received = raw.baseAddress else { return raw.isEmpty }
                return memcmp(cached, received, raw.count) == 0
            }
            if equal { return string }
        }
        let string = String(decoding: raw, as: UTF8.self)
        if strings.count == 8 { strings.removeFirst() }
        strings.append(string)
        return string
    }
}
