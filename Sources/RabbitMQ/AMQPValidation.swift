/// Checks made before anything is sent: librabbitmq notices some mistakes only after part of a
/// method is on the wire, which kills the connection, and others not at all.
enum AMQPValidation {
    /// AMQP short strings (exchange, queue and consumer names, routing keys, most properties)
    /// hold at most 255 bytes.
    /// `what` names the value in the error; it is only built when the check fails.
    static func shortString(_ value: String, _ what: @autoclosure () -> String) throws {
        try shortString(ExactText(value), what())
    }

    /// The same check for text kept exactly as it travels.
    static func shortString(_ value: ExactText, _ what: @autoclosure () -> String) throws {
        let length = value.byteCount
        guard length <= 255 else {
            throw AMQPError(
                .invalidArgument, "\(what()) '\(value.string.prefix(40))…' is \(length) bytes long; AMQP allows at most 255")
        }
    }
}

extension AMQPValidation {
    /// The size of `table` in the AMQP wire encoding (a 4-byte length, then each entry), after
    /// checking every entry with ``check(key:in:)`` and ``check(_:at:depth:)``. `place` names
    /// the table in errors (e.g. "headers").
    static func encodedSize(of table: FieldTable, in place: @autoclosure () -> String, depth: Int = 0) throws -> Int {
        var size = 4
        for entry in table.entries {
            try check(key: entry.exactKey, in: place())
            size += 1 + entry.exactKey.byteCount
            size += 1 + (try encodedSize(of: entry.value, at: "\(place()) › '\(entry.key)'", depth: depth))
        }
        return size
    }

    private static func encodedSize(of value: FieldValue, at place: @autoclosure () -> String, depth: Int) throws -> Int {
        try check(value, at: place(), depth: depth)
        return switch value {
        case .bool, .int8, .uint8: 1
        case .int16, .uint16: 2
        case .int32, .uint32, .float: 4
        case .int64, .uint64, .double, .timestamp: 8
        case .decimal: 5
        case .string(let string): 4 + string.utf8.count
        case .invalidUTF8String(let bytes), .bytes(let bytes): 4 + bytes.count
        case .table(let table): try encodedSize(of: table, in: place(), depth: depth + 1)
        case .array(let elements):
            4 + (try elements.reduce(0) { $0 + 1 + (try encodedSize(of: $1, at: "\(place()) › array", depth: depth + 1)) })
        case .void: 0
        }
    }

    /// A table key: at most 255 bytes (librabbitmq silently truncates a longer one and corrupts
    /// the frame).
    static func check(key: ExactText, in place: @autoclosure () -> String) throws {
        let length = key.byteCount
        guard length <= 255 else {
            throw AMQPError(
                .invalidArgument, "a key in \(place()), '\(key.string.prefix(40))…', is \(length) bytes; at most 255 are allowed")
        }
    }

    /// One value at nesting `depth` (its table's): refuses what RabbitMQ cannot read (it closes
    /// the connection over it) and what nests beyond ``FieldTable/maximumDepth``.
    static func check(_ value: FieldValue, at place: @autoclosure () -> String, depth: Int) throws {
        switch value {
        case .float(let float) where !float.isFinite:
            throw AMQPError(.invalidArgument, "\(place()) is \(float); RabbitMQ reads only finite floats")
        case .double(let double) where !double.isFinite:
            throw AMQPError(.invalidArgument, "\(place()) is \(double); RabbitMQ reads only finite doubles")
        case .table, .array:
            guard depth < FieldTable.maximumDepth else {
                throw AMQPError(
                    .invalidArgument, "\(place()) nests tables and arrays more than \(FieldTable.maximumDepth) levels deep")
            }
        default:
            break
        }
    }
}
