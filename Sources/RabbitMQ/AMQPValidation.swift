/// Checks made before anything is sent: librabbitmq notices some mistakes only after part of a
/// method is on the wire, which kills the connection, and others not at all.
enum AMQPValidation {
    /// AMQP short strings (exchange, queue and consumer names, routing keys, most properties)
    /// hold at most 255 bytes.
    /// `what` names the value in the error; it is only built when the check fails.
    static func shortString(_ value: String, _ what: @autoclosure () -> String) throws {
        let length = value.utf8.count
        guard length <= 255 else {
            throw AMQPError(
                .invalidArgument, "\(what()) '\(value.prefix(40))…' is \(length) bytes long; AMQP allows at most 255")
        }
    }
}

extension AMQPValidation {
    /// The size of `table` in the AMQP wire encoding (a 4-byte length, then each entry).
    static func encodedSize(of table: FieldTable) -> Int {
        4 + table.reduce(0) { $0 + 1 + $1.key.utf8.count + 1 + encodedSize(of: $1.value) }
    }

    private static func encodedSize(of value: FieldValue) -> Int {
        switch value {
        case .bool, .int8, .uint8: 1
        case .int16, .uint16: 2
        case .int32, .uint32, .float: 4
        case .int64, .uint64, .double, .timestamp: 8
        case .decimal: 5
        case .string(let string): 4 + string.utf8.count
        case .bytes(let bytes): 4 + bytes.count
        case .table(let table): encodedSize(of: table)
        case .array(let elements): 4 + elements.reduce(0) { $0 + 1 + encodedSize(of: $1) }
        case .void: 0
        }
    }
}
