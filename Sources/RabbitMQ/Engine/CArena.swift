internal import CRabbitMQ
import struct Foundation.Date

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

    /// Encodes `table` for librabbitmq, validating what the library does not: keys of at most
    /// 255 bytes (it silently truncates longer ones and corrupts the frame) and integers that
    /// RabbitMQ can read.
    func table(_ table: FieldTable) throws -> amqp_table_t {
        guard !table.isEmpty else { return amqp_table_t(num_entries: 0, entries: nil) }
        let entries = allocate(MemoryLayout<amqp_table_entry_t>.stride * table.count)
            .bindMemory(to: amqp_table_entry_t.self, capacity: table.count)
        for (index, (key, value)) in table.enumerated() {
            guard key.utf8.count <= 255 else {
                throw AMQPError(
                    .invalidArgument, "the field table key '\(key.prefix(40))…' is \(key.utf8.count) bytes; at most 255 are allowed")
            }
            entries[index] = amqp_table_entry_t(key: bytes(key), value: try self.value(value, key: key))
        }
        return amqp_table_t(num_entries: Int32(table.count), entries: entries)
    }

    private func value(_ value: FieldValue, key: String) throws -> amqp_field_value_t {
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
        case .uint64(let v):
            guard v <= UInt64(Int64.max) else {
                throw AMQPError(
                    .invalidArgument, "the field '\(key)' holds \(v), above Int64.max, which RabbitMQ cannot read")
            }
            // RabbitMQ does not take the 'L' type; a signed 64-bit value carries it.
            kind(AMQP_FIELD_KIND_I64); field.value.i64 = Int64(v)
        case .float(let v): kind(AMQP_FIELD_KIND_F32); field.value.f32 = v
        case .double(let v): kind(AMQP_FIELD_KIND_F64); field.value.f64 = v
        case .decimal(let scale, let v):
            kind(AMQP_FIELD_KIND_DECIMAL); field.value.decimal = amqp_decimal_t(decimals: scale, value: v)
        case .string(let v): kind(AMQP_FIELD_KIND_UTF8); field.value.bytes = bytes(v)
        case .bytes(let v): kind(AMQP_FIELD_KIND_BYTES); field.value.bytes = bytes(v)
        case .timestamp(let v):
            guard v.timeIntervalSince1970 >= 0 else {
                throw AMQPError(.invalidArgument, "the timestamp in '\(key)' is before 1970")
            }
            kind(AMQP_FIELD_KIND_TIMESTAMP); field.value.u64 = UInt64(v.timeIntervalSince1970)
        case .table(let v): kind(AMQP_FIELD_KIND_TABLE); field.value.table = try table(v)
        case .array(let elements):
            kind(AMQP_FIELD_KIND_ARRAY)
            let storage = allocate(MemoryLayout<amqp_field_value_t>.stride * elements.count)
                .bindMemory(to: amqp_field_value_t.self, capacity: max(elements.count, 1))
            for (index, element) in elements.enumerated() {
                storage[index] = try self.value(element, key: key)
            }
            field.value.array = amqp_array_t(num_entries: Int32(elements.count), entries: storage)
        case .void: kind(AMQP_FIELD_KIND_VOID)
        }
        return field
    }
}

extension FieldTable {
    /// Copies a table that librabbitmq decoded (its memory lives in a pool that is recycled soon).
    /// Nesting deeper than `depthLimit` is cut off: 0.11 itself has no recursion limit.
    init(copying table: amqp_table_t, depthLimit: Int = 100) {
        self.init(minimumCapacity: Int(table.num_entries))
        guard table.num_entries > 0, let entries = table.entries else { return }
        for index in 0..<Int(table.num_entries) {
            let entry = entries[index]
            let key = String(decoding: UnsafeRawBufferPointer(entry.key), as: UTF8.self)
            self[key] = FieldValue(copying: entry.value, depthLimit: depthLimit - 1)
        }
    }
}

extension FieldValue {
    init(copying field: amqp_field_value_t, depthLimit: Int) {
        guard depthLimit > 0 else {
            self = .void
            return
        }
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
            self = .decimal(scale: field.value.decimal.decimals, value: field.value.decimal.value)
        case AMQP_FIELD_KIND_UTF8:
            self = .string(String(decoding: UnsafeRawBufferPointer(field.value.bytes), as: UTF8.self))
        case AMQP_FIELD_KIND_BYTES: self = .bytes(Array(UnsafeRawBufferPointer(field.value.bytes)))
        case AMQP_FIELD_KIND_TIMESTAMP:
            self = .timestamp(Date(timeIntervalSince1970: Double(field.value.u64)))
        case AMQP_FIELD_KIND_TABLE: self = .table(FieldTable(copying: field.value.table, depthLimit: depthLimit))
        case AMQP_FIELD_KIND_ARRAY:
            let array = field.value.array
            var elements: [FieldValue] = []
            if array.num_entries > 0, let entries = array.entries {
                elements.reserveCapacity(Int(array.num_entries))
                for index in 0..<Int(array.num_entries) {
                    elements.append(FieldValue(copying: entries[index], depthLimit: depthLimit - 1))
                }
            }
            self = .array(elements)
        default: self = .void
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
