/// One value of an AMQP field table, covering every type RabbitMQ understands.
///
/// Literals work: strings become ``string(_:)``, integers ``int64(_:)``, floating-point numbers
/// ``double(_:)``, booleans ``bool(_:)``, array and dictionary literals ``array(_:)`` and
/// ``table(_:)``.
public enum FieldValue: Sendable, Hashable {
    /// `t`: a boolean.
    case bool(Bool)
    /// `b`: a signed 8-bit integer.
    case int8(Int8)
    /// `B`: an unsigned 8-bit integer.
    case uint8(UInt8)
    /// `s`: a signed 16-bit integer.
    case int16(Int16)
    /// `u`: an unsigned 16-bit integer.
    case uint16(UInt16)
    /// `I`: a signed 32-bit integer.
    case int32(Int32)
    /// `i`: an unsigned 32-bit integer.
    case uint32(UInt32)
    /// `l`: a signed 64-bit integer.
    case int64(Int64)
    /// `L`: an unsigned 64-bit integer. RabbitMQ passes it through in headers, but where it
    /// decodes and re-encodes them (dead-lettering adds `x-death`) it writes the same 64 bits as
    /// a signed `l`, and it reads integer arguments (`x-max-length` and the like) only from
    /// signed types: use ``int64(_:)`` there.
    case uint64(UInt64)
    /// `f`: a 32-bit float. NaN and infinities are refused before sending: RabbitMQ cannot read
    /// them and would close the connection.
    case float(Float)
    /// `d`: a 64-bit float. NaN and infinities are refused before sending, as for ``float(_:)``.
    case double(Double)
    /// `D`: a decimal, `value` × 10^-`scale` (`scale: 2, value: -12345` is -123.45).
    case decimal(scale: UInt8, value: Int32)
    /// `S`: a UTF-8 string (a long string: any length).
    case string(String)
    /// `S` whose bytes are not valid UTF-8 (a Latin-1 name from a legacy publisher, say), kept
    /// byte for byte so that it is forwarded unchanged. A received `S` arrives as ``string(_:)``
    /// whenever its bytes are valid UTF-8, so build values with ``longString(bytes:)``.
    case invalidUTF8String([UInt8])
    /// `x`: raw bytes.
    case bytes([UInt8])
    /// `T`: a timestamp, exactly as it travels (``AMQPTimestamp``).
    case timestamp(AMQPTimestamp)
    /// `F`: a nested table.
    case table(FieldTable)
    /// `A`: an array of values.
    case array([FieldValue])
    /// `V`: no value.
    case void
}

extension FieldValue: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
}

extension FieldValue: ExpressibleByIntegerLiteral {
    public init(integerLiteral value: Int64) { self = .int64(value) }
}

extension FieldValue: ExpressibleByFloatLiteral {
    public init(floatLiteral value: Double) { self = .double(value) }
}

extension FieldValue: ExpressibleByBooleanLiteral {
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}

extension FieldValue: ExpressibleByArrayLiteral {
    public init(arrayLiteral elements: FieldValue...) { self = .array(elements) }
}

extension FieldValue: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, FieldValue)...) {
        self = .table(FieldTable(elements.map { FieldTable.Entry(key: $0.0, value: $0.1) }))
    }
}

extension FieldValue {
    /// `S` with exactly `bytes`: ``string(_:)`` when they are valid UTF-8, otherwise
    /// ``invalidUTF8String(_:)``.
    public static func longString(bytes: [UInt8]) -> FieldValue {
        switch ExactText(bytes: bytes) {
        case .utf8(let string): .string(string)
        case .invalidUTF8(let bytes): .invalidUTF8String(bytes)
        }
    }

    /// The string, if this is a ``string(_:)`` (or UTF-8 ``bytes(_:)``). For an
    /// ``invalidUTF8String(_:)``, the text with invalid sequences read as U+FFFD.
    public var stringValue: String? {
        switch self {
        case .string(let string): string
        case .invalidUTF8String(let bytes): String(decoding: bytes, as: UTF8.self)
        case .bytes(let bytes): String(validating: bytes, as: UTF8.self)
        default: nil
        }
    }

    /// The value as an `Int64`, if this is an integer of any width that fits.
    public var int64Value: Int64? {
        switch self {
        case .int8(let v): Int64(v)
        case .uint8(let v): Int64(v)
        case .int16(let v): Int64(v)
        case .uint16(let v): Int64(v)
        case .int32(let v): Int64(v)
        case .uint32(let v): Int64(v)
        case .int64(let v): v
        case .uint64(let v): Int64(exactly: v)
        default: nil
        }
    }

    /// The nested table, if this is a ``table(_:)``.
    public var tableValue: FieldTable? {
        if case .table(let table) = self { table } else { nil }
    }

    /// The elements, if this is an ``array(_:)``.
    public var arrayValue: [FieldValue]? {
        if case .array(let array) = self { array } else { nil }
    }
}
