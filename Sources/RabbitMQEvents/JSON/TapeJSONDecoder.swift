import Foundation

/// The event codec's JSON decoder: parses the text once into a ``JSONTape`` and lets a
/// `Decodable` type read its values from there, converting only what it asks for.
///
/// It reads what Foundation's `JSONDecoder` reads (including its two liberties, see ``JSONTape``),
/// with the same answers: numbers into any
/// integer type when they are whole and fit (`1.0`, `1e2`), keys matched exactly (the first of
/// duplicate keys wins), `Data` from Base64, `URL` from a string, `Decimal` from a number, and
/// dates as `2026-11-21T12:00:01.234Z` or `2026-11-21T12:00:01Z` (other ISO 8601 spellings go
/// to Foundation's parser, as before). Errors are `DecodingError`s with their coding paths.
enum TapeJSONDecoder {
    /// Decodes a `Value` from a JSON text.
    static func decode<Value: Decodable>(_ type: Value.Type, from bytes: [UInt8]) throws -> Value {
        let tape = try JSONTape(bytes)
        return try tape.decodeValue(Value.self, at: 0)
    }
}

/// The `Decoder` of one value of a tape; also its single-value container. Two words, so it fits
/// an existential without a box.
struct TapeDecoder: Decoder, SingleValueDecodingContainer {
    let tape: JSONTape
    /// The value's token; -1 for the null of a missing `super` key.
    let index: Int

    var codingPath: [any CodingKey] { tape.path(to: index) }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard tape.kind(at: index) == .object else { throw tape.mismatch([String: Any].self, at: index) }
        try tape.checkKeys(of: index)
        return KeyedDecodingContainer(TapeKeyedContainer<Key>(tape: tape, object: index))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard tape.kind(at: index) == .array else { throw tape.mismatch([Any].self, at: index) }
        return TapeUnkeyedContainer(tape: tape, array: index)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { self }

    func decodeNil() -> Bool { tape.kind(at: index) == .null }
    func decode(_ type: Bool.Type) throws -> Bool { try tape.decodeBool(at: index) }
    func decode(_ type: String.Type) throws -> String { try tape.decodeString(at: index) }
    func decode(_ type: Double.Type) throws -> Double { try tape.decodeFloatingPoint(at: index) }
    func decode(_ type: Float.Type) throws -> Float { try tape.decodeFloatingPoint(at: index) }
    func decode(_ type: Int.Type) throws -> Int { try tape.decodeInteger(at: index) }
    func decode(_ type: Int8.Type) throws -> Int8 { try tape.decodeInteger(at: index) }
    func decode(_ type: Int16.Type) throws -> Int16 { try tape.decodeInteger(at: index) }
    func decode(_ type: Int32.Type) throws -> Int32 { try tape.decodeInteger(at: index) }
    func decode(_ type: Int64.Type) throws -> Int64 { try tape.decodeInteger(at: index) }
    func decode(_ type: UInt.Type) throws -> UInt { try tape.decodeInteger(at: index) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try tape.decodeInteger(at: index) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try tape.decodeInteger(at: index) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try tape.decodeInteger(at: index) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try tape.decodeInteger(at: index) }
    @available(macOS 15.0, iOS 18.0, watchOS 11.0, tvOS 18.0, visionOS 2.0, *)
    func decode(_ type: Int128.Type) throws -> Int128 { try tape.decodeInteger(at: index) }
    @available(macOS 15.0, iOS 18.0, watchOS 11.0, tvOS 18.0, visionOS 2.0, *)
    func decode(_ type: UInt128.Type) throws -> UInt128 { try tape.decodeInteger(at: index) }
    func decode<Value: Decodable>(_ type: Value.Type) throws -> Value { try tape.decodeValue(Value.self, at: index) }
}

/// A JSON object's entries.
struct TapeKeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let tape: JSONTape
    let object: Int

    var codingPath: [any CodingKey] { tape.path(to: object) }

    var allKeys: [Key] {
        var keys: [Key] = []
        var keyIndex = object + 1
        let end = Int(tape.tokens[object].next)
        while keyIndex < end {
            if let text = try? tape.decodedString(at: keyIndex), let key = Key(stringValue: text) { keys.append(key) }
            keyIndex = Int(tape.tokens[keyIndex + 1].next)
        }
        return keys
    }

    func contains(_ key: Key) -> Bool { tape.valueIndex(of: key.stringValue, in: object) != nil }

    /// The token of the key's value.
    /// - Throws: `DecodingError.keyNotFound`.
    private func value(_ key: Key) throws -> Int {
        guard let index = tape.valueIndex(of: key.stringValue, in: object) else {
            throw DecodingError.keyNotFound(
                key,
                .init(codingPath: codingPath, debugDescription: "No value associated with key \(key) (\"\(key.stringValue)\")."))
        }
        return index
    }

    /// The token of the key's value; `nil` when the key is missing or its value is null.
    private func valueIfPresent(_ key: Key) -> Int? {
        guard let index = tape.valueIndex(of: key.stringValue, in: object), tape.kind(at: index) != .null else { return nil }
        return index
    }

    func decodeNil(forKey key: Key) throws -> Bool { tape.kind(at: try value(key)) == .null }
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try tape.decodeBool(at: value(key)) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try tape.decodeString(at: value(key)) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try tape.decodeFloatingPoint(at: value(key)) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try tape.decodeFloatingPoint(at: value(key)) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try tape.decodeInteger(at: value(key)) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try tape.decodeInteger(at: value(key)) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try tape.decodeInteger(at: value(key)) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try tape.decodeInteger(at: value(key)) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try tape.decodeInteger(at: value(key)) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try tape.decodeInteger(at: value(key)) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try tape.decodeInteger(at: value(key)) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try tape.decodeInteger(at: value(key)) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try tape.decodeInteger(at: value(key)) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try tape.decodeInteger(at: value(key)) }
    @available(macOS 15.0, iOS 18.0, watchOS 11.0, tvOS 18.0, visionOS 2.0, *)
    func decode(_ type: Int128.Type, forKey key: Key) throws -> Int128 { try tape.decodeInteger(at: value(key)) }
    @available(macOS 15.0, iOS 18.0, watchOS 11.0, tvOS 18.0, visionOS 2.0, *)
    func decode(_ type: UInt128.Type, forKey key: Key) throws -> UInt128 { try tape.decodeInteger(at: value(key)) }
    func decode<Value: Decodable>(_ type: Value.Type, forKey key: Key) throws -> Value {
        try tape.decodeValue(Value.self, at: value(key))
    }

    // One lookup for an optional instead of the default's three (contains, decodeNil, decode).
    func decodeIfPresent(_ type: Bool.Type, forKey key: Key) throws -> Bool? {
        try valueIfPresent(key).map { try tape.decodeBool(at: $0) }
    }
    func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? {
        try valueIfPresent(key).map { try tape.decodeString(at: $0) }
    }
    func decodeIfPresent(_ type: Double.Type, forKey key: Key) throws -> Double? {
        try valueIfPresent(key).map { try tape.decodeFloatingPoint(at: $0) }
    }
    func decodeIfPresent(_ type: Float.Type, forKey key: Key) throws -> Float? {
        try valueIfPresent(key).map { try tape.decodeFloatingPoint(at: $0) }
    }
    func decodeIfPresent(_ type: Int.Type, forKey key: Key) throws -> Int? {
        try valueIfPresent(key).map { try tape.decodeInteger(at: $0) }
    }
    func decodeIfPresent(_ type: Int64.Type, forKey key: Key) throws -> Int64? {
        try valueIfPresent(key).map { try tape.decodeInteger(at: $0) }
    }
    func decodeIfPresent<Value: Decodable>(_ type: Value.Type, forKey key: Key) throws -> Value? {
        try valueIfPresent(key).map { try tape.decodeValue(Value.self, at: $0) }
    }

    func nestedContainer<NestedKey: CodingKey>(
        keyedBy type: NestedKey.Type, forKey key: Key
    ) throws -> KeyedDecodingContainer<NestedKey> {
        try TapeDecoder(tape: tape, index: value(key)).container(keyedBy: NestedKey.self)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try TapeDecoder(tape: tape, index: value(key)).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        TapeDecoder(tape: tape, index: tape.valueIndex(of: "super", in: object) ?? -1)
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        TapeDecoder(tape: tape, index: tape.valueIndex(of: key.stringValue, in: object) ?? -1)
    }
}

/// A JSON array's elements, read in order.
struct TapeUnkeyedContainer: UnkeyedDecodingContainer {
    let tape: JSONTape
    let array: Int
    /// The token of the next element.
    private var next: Int
    private(set) var currentIndex = 0

    init(tape: JSONTape, array: Int) {
        self.tape = tape
        self.array = array
        self.next = array + 1
    }

    var codingPath: [any CodingKey] { tape.path(to: array) }
    var count: Int? { Int(tape.tokens[array].count) }
    var isAtEnd: Bool { currentIndex >= Int(tape.tokens[array].count) }

    /// The next element's token, moving past it.
    private mutating func advance<Value>(_ type: Value.Type) throws -> Int {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(
                Value.self,
                .init(codingPath: codingPath + [JSONIndexKey(currentIndex)], debugDescription: "Unkeyed container is at end."))
        }
        let element = next
        next = Int(tape.tokens[element].next)
        currentIndex += 1
        return element
    }

    mutating func decodeNil() throws -> Bool {
        if isAtEnd { _ = try advance(Any?.self) }  // throws: nothing left
        guard tape.kind(at: next) == .null else { return false }
        _ = try advance(Any?.self)
        return true
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool { try tape.decodeBool(at: advance(type)) }
    mutating func decode(_ type: String.Type) throws -> String { try tape.decodeString(at: advance(type)) }
    mutating func decode(_ type: Double.Type) throws -> Double { try tape.decodeFloatingPoint(at: advance(type)) }
    mutating func decode(_ type: Float.Type) throws -> Float { try tape.decodeFloatingPoint(at: advance(type)) }
    mutating func decode(_ type: Int.Type) throws -> Int { try tape.decodeInteger(at: advance(type)) }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try tape.decodeInteger(at: advance(type)) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try tape.decodeInteger(at: advance(type)) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try tape.decodeInteger(at: advance(type)) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try tape.decodeInteger(at: advance(type)) }
    mutating func decode(_ type: UInt.Type) throws -> UInt { try tape.decodeInteger(at: advance(type)) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try tape.decodeInteger(at: advance(type)) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try tape.decodeInteger(at: advance(type)) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try tape.decodeInteger(at: advance(type)) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try tape.decodeInteger(at: advance(type)) }
    @available(macOS 15.0, iOS 18.0, watchOS 11.0, tvOS 18.0, visionOS 2.0, *)
    mutating func decode(_ type: Int128.Type) throws -> Int128 { try tape.decodeInteger(at: advance(type)) }
    @available(macOS 15.0, iOS 18.0, watchOS 11.0, tvOS 18.0, visionOS 2.0, *)
    mutating func decode(_ type: UInt128.Type) throws -> UInt128 { try tape.decodeInteger(at: advance(type)) }
    mutating func decode<Value: Decodable>(_ type: Value.Type) throws -> Value {
        try tape.decodeValue(Value.self, at: advance(type))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try TapeDecoder(tape: tape, index: advance([String: Any].self)).container(keyedBy: NestedKey.self)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try TapeDecoder(tape: tape, index: advance([Any].self)).unkeyedContainer()
    }

    mutating func superDecoder() throws -> any Decoder {
        TapeDecoder(tape: tape, index: try advance((any Decoder).self))
    }
}

/// Reading values from the tape, with Foundation's errors.
extension JSONTape {
    func kind(at index: Int) -> Kind {
        index < 0 ? .null : tokens[index].kind
    }

    /// The coding path of a value: the keys and indexes of the containers around it.
    func path(to index: Int) -> [any CodingKey] {
        var path: [any CodingKey] = []
        var child = index
        while child > 0 {
            let parent = Int(tokens[child].parent)
            if tokens[parent].kind == .object {
                // An object's value follows its key.
                let key = (try? decodedString(at: child - 1)) ?? withBytes(at: child - 1) { String(decoding: $0, as: UTF8.self) }
                path.append(JSONPathKey(key))
            } else {
                var element = parent + 1
                var position = 0
                while element != child {
                    element = Int(tokens[element].next)
                    position += 1
                }
                path.append(JSONIndexKey(position))
            }
            child = parent
        }
        return path.reversed()
    }

    /// The error for a value of the wrong kind: `valueNotFound` for null, else `typeMismatch`.
    func mismatch<Value>(_ type: Value.Type, at index: Int) -> DecodingError {
        let kind = kind(at: index)
        let path = path(to: index)
        if kind == .null {
            return .valueNotFound(
                Value.self, .init(codingPath: path, debugDescription: "Cannot get value of type \(Value.self) -- found null value instead"))
        }
        let found: String
        switch kind {
        case .object: found = "a dictionary"
        case .array: found = "an array"
        case .string: found = "a string"
        case .number: found = "number"
        case .true, .false: found = "bool"
        case .null: found = "null"
        }
        return .typeMismatch(
            Value.self, .init(codingPath: path, debugDescription: "Expected to decode \(Value.self) but found \(found) instead."))
    }

    private func notRepresentable<Value>(_ type: Value.Type, at index: Int) -> DecodingError {
        let text = withBytes(at: index) { String(decoding: $0, as: UTF8.self) }
        return .dataCorrupted(.init(codingPath: path(to: index), debugDescription: "Number \(text) is not representable in \(Value.self)."))
    }

    /// Reads every key of the object that is not plain ASCII, as Foundation's decoder reads all
    /// keys of an object it opens.
    /// - Throws: `DecodingError.dataCorrupted` for a key that is not a valid JSON string.
    func checkKeys(of object: Int) throws {
        let end = Int(tokens[object].next)
        var keyIndex = object + 1
        while keyIndex < end {
            if tokens[keyIndex].flagged { _ = try decodedString(at: keyIndex) }
            keyIndex = Int(tokens[keyIndex + 1].next)
        }
    }

    /// The value of the key in the object: the first entry with that key.
    func valueIndex(of key: String, in object: Int) -> Int? {
        let end = Int(tokens[object].next)
        // Types read their keys in the order they were written: try where the last lookup ended.
        let hinted = hint
        if hinted > object, hinted < end, Int(tokens[hinted].parent) == object, string(at: hinted, equals: key) {
            hint = Int(tokens[hinted + 1].next)
            return hinted + 1
        }
        var keyIndex = object + 1
        while keyIndex < end {
            let valueIndex = keyIndex + 1
            if string(at: keyIndex, equals: key) {
                hint = Int(tokens[valueIndex].next)
                return valueIndex
            }
            keyIndex = Int(tokens[valueIndex].next)
        }
        return nil
    }

    func decodeBool(at index: Int) throws -> Bool {
        switch kind(at: index) {
        case .true: return true
        case .false: return false
        default: throw mismatch(Bool.self, at: index)
        }
    }

    func decodeString(at index: Int) throws -> String {
        guard kind(at: index) == .string else { throw mismatch(String.self, at: index) }
        return try decodedString(at: index)
    }

    func decodeInteger<Value: FixedWidthInteger>(at index: Int) throws -> Value {
        guard kind(at: index) == .number else { throw mismatch(Value.self, at: index) }
        if !tokens[index].flagged, let value = withBytes(at: index, { Self.parseInteger($0, as: Value.self) }) { return value }
        // Anything but a plain integer that fits, read as Foundation does: as a Double (strtod),
        // which must be whole and in range (1.0, 1e2, even 1e-400 as 0); from 2^53 on, where a
        // Double has no fraction left, as a Decimal without its fraction.
        let text = try validatedNumber(at: index)
        guard let double = Double(text), let value = Value(exactly: double) else { throw notRepresentable(Value.self, at: index) }
        if double.magnitude < 9_007_199_254_740_992 { return value }
        guard let decimal = Decimal(string: text, locale: Locale(identifier: "en_US_POSIX")),
            let whole = Self.withoutFraction(decimal, as: Value.self)
        else { throw notRepresentable(Value.self, at: index) }
        return whole
    }

    /// A plain integer's value; `nil` when it does not fit `Value`.
    private static func parseInteger<Value: FixedWidthInteger>(_ text: UnsafeBufferPointer<UInt8>, as type: Value.Type) -> Value? {
        var position = 0
        let negative = text[0] == UInt8(ascii: "-")
        if negative { position = 1 }
        var value: Value = 0
        while position < text.count {
            let digit = Value(text[position] &- UInt8(ascii: "0"))
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (next, overflow2) = negative ? shifted.subtractingReportingOverflow(digit) : shifted.addingReportingOverflow(digit)
            guard !overflow1, !overflow2 else { return nil }
            value = next
            position += 1
        }
        return value
    }

    /// A decimal's integer part as `Value`, when it fits.
    private static func withoutFraction<Value: FixedWidthInteger>(_ decimal: Decimal, as type: Value.Type) -> Value? {
        var magnitude = decimal.magnitude
        var whole = Decimal()
        NSDecimalRound(&whole, &magnitude, 0, .down)
        return Value(decimal < 0 ? "-" + whole.description : whole.description)
    }

    func decodeFloatingPoint<Value: BinaryFloatingPoint & LosslessStringConvertible>(at index: Int) throws -> Value {
        guard kind(at: index) == .number else { throw mismatch(Value.self, at: index) }
        let text = try validatedNumber(at: index)
        guard let value = Value(text), value.isFinite else { throw notRepresentable(Value.self, at: index) }
        // Like Foundation, refuse a number too small to be told from zero (1e-400).
        if value == 0, text.utf8.prefix(while: { $0 | 0x20 != UInt8(ascii: "e") }).contains(where: { $0 > UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) {
            throw notRepresentable(Value.self, at: index)
        }
        return value
    }

    /// Decodes any value: the special Foundation types as Foundation's `JSONDecoder` reads them,
    /// scalars directly, everything else through its `init(from:)`.
    func decodeValue<Value: Decodable>(_ type: Value.Type, at index: Int) throws -> Value {
        if Value.self == String.self { return try decodeString(at: index) as! Value }
        if Value.self == Int.self { return try decodeInteger(at: index) as Int as! Value }
        if Value.self == Double.self { return try decodeFloatingPoint(at: index) as Double as! Value }
        if Value.self == Bool.self { return try decodeBool(at: index) as! Value }
        if Value.self == Date.self { return try decodeDate(at: index) as! Value }
        if Value.self == Data.self {
            guard let data = Data(base64Encoded: try decodeString(at: index)) else {
                throw DecodingError.dataCorrupted(.init(codingPath: path(to: index), debugDescription: "Encountered Data is not valid Base64."))
            }
            return data as! Value
        }
        if Value.self == URL.self {
            guard let url = URL(string: try decodeString(at: index)) else {
                throw DecodingError.dataCorrupted(.init(codingPath: path(to: index), debugDescription: "Invalid URL string."))
            }
            return url as! Value
        }
        if Value.self == Decimal.self {
            guard kind(at: index) == .number else { throw mismatch(Decimal.self, at: index) }
            let text = try validatedNumber(at: index)
            guard let decimal = Decimal(string: text, locale: Locale(identifier: "en_US_POSIX")) else {
                throw notRepresentable(Decimal.self, at: index)
            }
            return decimal as! Value
        }
        return try Value(from: TapeDecoder(tape: self, index: index))
    }

    func decodeDate(at index: Int) throws -> Date {
        guard kind(at: index) == .string else { throw mismatch(Date.self, at: index) }
        if !tokens[index].flagged, let milliseconds = withBytes(at: index, ISO8601Milliseconds.parse) {
            return Date(timeIntervalSince1970: Double(milliseconds) / 1000)
        }
        let text = try decodedString(at: index)
        if let date = FoundationJSONEventCodec.parseDate(text) { return date }
        throw DecodingError.dataCorrupted(
            .init(codingPath: path(to: index), debugDescription: "'\(text)' is not an ISO 8601 date such as 2026-11-21T12:00:01.234Z"))
    }
}

/// The coding-path key of an object's entry, as read from the text.
struct JSONPathKey: CodingKey {
    let stringValue: String
    init(_ string: String) { stringValue = string }
    init?(stringValue: String) { self.init(stringValue) }
    init?(intValue: Int) { nil }
    var intValue: Int? { nil }
}
