internal import CRabbitMQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Owns the C memory behind the `amqp_bytes_t` and `amqp_table_t` values handed to librabbitmq
/// for one call. librabbitmq only reads them while the call runs (it encodes them into its own
/// outbound buffer), so an arena lives exactly as long as the call: everything is freed at once
/// when it goes away.
final class CArena {
    private var blocks: [UnsafeMutableRawPointer] = []

    init() {}

    deinit {
        reset()
    }

    /// Frees everything allocated so far; the arena can be used again.
    func reset() {
        for block in blocks { free(block) }
        blocks.removeAll(keepingCapacity: true)
    }

    private func allocate(_ byteCount: Int) -> UnsafeMutableRawPointer {
        let block = malloc(max(byteCount, 1))!
        blocks.append(block)
        return block
    }

    /// The UTF-8 bytes of `string`, without a terminator.
    func bytes(_ string: String) -> amqp_bytes_t {
        var string = string
        return string.withUTF8 { bytes(UnsafeRawBufferPointer($0)) }
    }

    /// A copy of `source`.
    func bytes(_ source: some Collection<UInt8>) -> amqp_bytes_t {
        let count = source.count
        guard count > 0 else { return amqp_bytes_t(len: 0, bytes: nil) }
        let block = allocate(count)
        UnsafeMutableRawBufferPointer(start: block, count: count).copyBytes(from: source)
        return amqp_bytes_t(len: count, bytes: block)
    }

    /// A NUL-terminated copy of `string`, for the librabbitmq calls that take C strings.
    func cString(_ string: String) -> UnsafePointer<CChar> {
        let utf8 = Array(string.utf8)
        let block = allocate(utf8.count + 1).bindMemory(to: CChar.self, capacity: utf8.count + 1)
        for (index, byte) in utf8.enumerated() { block[index] = CChar(bitPattern: byte) }
        block[utf8.count] = 0
        return UnsafePointer(block)
    }

    /// The bytes of `text`, exactly as it travels.
    func bytes(_ text: ExactText) -> amqp_bytes_t {
        switch text {
        case .utf8(let string): bytes(string)
        case .invalidUTF8(let raw): bytes(raw)
        }
    }

    /// Encodes `table` for librabbitmq, checking what the library does not (keys of at most 255
    /// bytes: it silently truncates longer ones and corrupts the frame) and what RabbitMQ
    /// cannot read (``AMQPValidation/check(_:at:depth:)``).
    func table(_ table: FieldTable, depth: Int = 0) throws -> amqp_table_t {
        let count = table.entries.count
        guard count > 0 else { return amqp_table_t(num_entries: 0, entries: nil) }
        let entries = allocate(MemoryLayout<amqp_table_entry_t>.stride * count)
            .bindMemory(to: amqp_table_entry_t.self, capacity: count)
        for (index, entry) in table.entries.enumerated() {
            try AMQPValidation.check(key: entry.exactKey, in: "a field table")
            entries[index] = amqp_table_entry_t(
                key: bytes(entry.exactKey), value: try value(entry.value, key: entry.key, depth: depth))
        }
        return amqp_table_t(num_entries: Int32(count), entries: entries)
    }

    private func value(_ value: FieldValue, key: String, depth: Int) throws -> amqp_field_value_t {
        try AMQPValidation.check(value, at: "the field '\(key)'", depth: depth)
        var field = amqp_field_value_t()
        func kind(_ kind: amqp_field_value_kind_t) { field.kind = UInt8(kind.rawValue) }
        switch value {
        case .bool(let v): kind(AMQP_FIELD_KIND_BOOLEAN); field.value.boolean = v ? 1 : 0
        case .int8(let v): kind(AMQP_FIELD_KIND_I8); field.value.i8 = v
        case .uint8(let v): kind(AMQP_FIELD_KIND_U8); field.value.u8 = v
        case .int16(let v): kind(AMQP_FIELD_KIND_I16); field.value.i16 = v
        case .uint16(let v): kind(AMQP_FIELD_KIND_U16); field.value.u16 = v
        case .int32(let v): kind(AMQP_FIELD_KIND_I32); field.value.i32 = v
        case .uint32(let v): kind(AMQP_FIELD_KIND_U32); field.value.u32 = v
        case .int64(let v): kind(AMQP_FIELD_KIND_I64); field.value.i64 = v
        case .uint64(let v): kind(AMQP_FIELD_KIND_U64); field.value.u64 = v
        case .float(let v): kind(AMQP_FIELD_KIND_F32); field.value.f32 = v
        case .double(let v): kind(AMQP_FIELD_KIND_F64); field.value.f64 = v
        case .decimal(let scale, let v):
            kind(AMQP_FIELD_KIND_DECIMAL)
            field.value.decimal = amqp_decimal_t(decimals: scale, value: UInt32(bitPattern: v))
        case .string(let v): kind(AMQP_FIELD_KIND_UTF8); field.value.bytes = bytes(v)
        case .invalidUTF8String(let v): kind(AMQP_FIELD_KIND_UTF8); field.value.bytes = bytes(v)
        case .bytes(let v): kind(AMQP_FIELD_KIND_BYTES); field.value.bytes = bytes(v)
        case .timestamp(let v): kind(AMQP_FIELD_KIND_TIMESTAMP); field.value.u64 = v.rawValue
        case .table(let v): kind(AMQP_FIELD_KIND_TABLE); field.value.table = try table(v, depth: depth + 1)
        case .array(let elements):
            kind(AMQP_FIELD_KIND_ARRAY)
            let storage = allocate(MemoryLayout<amqp_field_value_t>.stride * elements.count)
                .bindMemory(to: amqp_field_value_t.self, capacity: max(elements.count, 1))
            for (index, element) in elements.enumerated() {
                storage[index] = try self.value(element, key: key, depth: depth + 1)
            }
            field.value.array = amqp_array_t(num_entries: Int32(elements.count), entries: storage)
        case .void: kind(AMQP_FIELD_KIND_VOID)
        }
        return field
    }
}

extension FieldTable {
    /// Copies a table that librabbitmq decoded (its memory lives in a pool that is recycled soon),
    /// exactly: order, duplicate keys and bytes are kept. Throws ``AMQPError/Code/protocolError``
    /// when tables and arrays nest deeper than ``FieldTable/maximumDepth`` (librabbitmq 0.11
    /// decodes any depth; copying on would risk the stack of whatever walks the value later).
    init(copying table: amqp_table_t, depth: Int = 0) throws {
        self.init()
        guard table.num_entries > 0, let entries = table.entries else { return }
        self.entries.reserveCapacity(Int(table.num_entries))
        for index in 0..<Int(table.num_entries) {
            let entry = entries[index]
            self.entries.append(
                Entry(
                    exactKey: ExactText(bytes: UnsafeRawBufferPointer(entry.key)),
                    value: try FieldValue(copying: entry.value, depth: depth)))
        }
    }
}

extension FieldValue {
    /// Copies a value at nesting `depth` (its table's), as ``FieldTable/init(copying:depth:)``.
    init(copying field: amqp_field_value_t, depth: Int) throws {
        switch amqp_field_value_kind_t(UInt32(field.kind)) {
        case AMQP_FIELD_KIND_BOOLEAN: self = .bool(field.value.boolean != 0)
        case AMQP_FIELD_KIND_I8: self = .int8(field.value.i8)
        case AMQP_FIELD_KIND_U8: self = .uint8(field.value.u8)
        case AMQP_FIELD_KIND_I16: self = .int16(field.value.i16)
        case AMQP_FIELD_KIND_U16: self = .uint16(field.value.u16)
        case AMQP_FIELD_KIND_I32: self = .int32(field.value.i32)
        case AMQP_FIELD_KIND_U32: self = .uint32(field.value.u32)
        case AMQP_FIELD_KIND_I64: self = .int64(field.value.i64)
        case AMQP_FIELD_KIND_U64: self = .uint64(field.value.u64)
        case AMQP_FIELD_KIND_F32: self = .float(field.value.f32)
        case AMQP_FIELD_KIND_F64: self = .double(field.value.f64)
        case AMQP_FIELD_KIND_DECIMAL:
            self = .decimal(scale: field.value.decimal.decimals, value: Int32(bitPattern: field.value.decimal.value))
        case AMQP_FIELD_KIND_UTF8:
            self = .longString(bytes: Array(UnsafeRawBufferPointer(field.value.bytes)))
        case AMQP_FIELD_KIND_BYTES: self = .bytes(Array(UnsafeRawBufferPointer(field.value.bytes)))
        case AMQP_FIELD_KIND_TIMESTAMP: self = .timestamp(AMQPTimestamp(rawValue: field.value.u64))
        case AMQP_FIELD_KIND_TABLE:
            try Self.checkDepth(depth)
            self = .table(try FieldTable(copying: field.value.table, depth: depth + 1))
        case AMQP_FIELD_KIND_ARRAY:
            try Self.checkDepth(depth)
            let array = field.value.array
            var elements: [FieldValue] = []
            if array.num_entries > 0, let entries = array.entries {
                elements.reserveCapacity(Int(array.num_entries))
                for index in 0..<Int(array.num_entries) {
                    elements.append(try FieldValue(copying: entries[index], depth: depth + 1))
                }
            }
            self = .array(elements)
        default:
            // librabbitmq fails the frame for a type it does not know; VOID is the one left.
            self = .void
        }
    }

    private static func checkDepth(_ depth: Int) throws {
        guard depth < FieldTable.maximumDepth else {
            throw AMQPError(
                .protocolError, "a field table nests tables and arrays more than \(FieldTable.maximumDepth) levels deep")
        }
    }
}

extension amqp_bytes_t {
    /// Bytes borrowed for the duration of a call (librabbitmq only reads them).
    init(borrowing buffer: UnsafeBufferPointer<UInt8>) {
        self.init(len: buffer.count, bytes: UnsafeMutableRawPointer(mutating: buffer.baseAddress))
    }
}

extension UnsafeRawBufferPointer {
    /// A view of librabbitmq's bytes (valid only until its pool is recycled: copy before then).
    init(_ bytes: amqp_bytes_t) {
        self.init(start: bytes.bytes, count: bytes.len)
    }
}

extension String {
    /// A copy of librabbitmq's bytes as UTF-8 text.
    init(copying bytes: amqp_bytes_t) {
        self = String(decoding: UnsafeRawBufferPointer(bytes), as: UTF8.self)
    }
}
