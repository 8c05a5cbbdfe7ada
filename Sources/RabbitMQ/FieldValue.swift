import struct Foundation.Date

/// An AMQP field table: message headers, queue and exchange arguments, client and server
/// properties. Keys are at most 255 bytes of UTF-8.
///
/// ```swift
/// let arguments: FieldTable = ["x-queue-type": "quorum", "x-max-length": 10_000]
/// ```
public typealias FieldTable = [String: FieldValue]

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
    /// An unsigned 64-bit integer. RabbitMQ has no unsigned 64-bit type on the wire, so it is
    /// sent as a signed one (`l`) and comes back as ``int64(_:)``; values above `Int64.max` are
    /// rejected before sending. Received `L` values arrive as this case.
    case uint64(UInt64)
    /// `f`: a 32-bit float.
    case float(Float)
    /// `d`: a 64-bit float.
    case double(Double)
    /// `D`: a decimal, `value` × 10^-`scale`.
    case decimal(scale: UInt8, value: UInt32)
    /// `S`: a UTF-8 string (a long string: any length).
    case string(String)
    /// `x`: raw bytes.
    case bytes([UInt8])
    /// `T`: a timestamp, in whole seconds since 1970 (fractions are dropped on the wire).
    case timestamp(Date)
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
        self = .table(FieldTable(elements, uniquingKeysWith: { _, last in last }))
    }
}

extension FieldValue {
    /// The string, if this is a ``string(_:)`` (or UTF-8 ``bytes(_:)``).
    public var stringValue: String? {
        switch self {
        case .string(let string): string
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
