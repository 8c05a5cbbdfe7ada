internal import CRabbitMQ

/// The few strings a channel's deliveries repeat (exchange, routing key, consumer tag), so each
/// delivery reuses them instead of allocating new ones.
struct RecentStrings {
    private var strings: [String] = []

    /// The string for librabbitmq's bytes: a cached one if it is equal, else a new copy.
    mutating func string(_ bytes: amqp_bytes_t) -> String {
        let raw = UnsafeRawBufferPointer(bytes)
        for string in strings where string.utf8.count == raw.count && string.utf8.elementsEqual(raw) {
            return string
        }
        let string = String(decoding: raw, as: UTF8.self)
        if strings.count == 8 { strings.removeFirst() }
        strings.append(string)
        return string
    }
}
