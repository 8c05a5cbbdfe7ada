/// Checks made before anything is sent: librabbitmq notices some mistakes only after part of a
/// method is on the wire, which kills the connection, and others not at all.
enum AMQPValidation {
    /// AMQP short strings (exchange, queue and consumer names, routing keys, most properties)
    /// hold at most 255 bytes.
    static func shortString(_ value: String, _ what: String) throws {
        let length = value.utf8.count
        guard length <= 255 else {
            throw AMQPError(
                .invalidArgument, "\(what) '\(value.prefix(40))…' is \(length) bytes long; AMQP allows at most 255")
        }
    }
}
