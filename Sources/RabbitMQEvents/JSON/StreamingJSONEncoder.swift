import Foundation

/// The event codec's JSON encoder: writes an `Encodable` value's JSON straight into one byte buffer
/// as its `encode(to:)` runs, with no tree of intermediate values.
///
/// That works for the way synthesized and almost all hand-written `encode(to:)` implementations
/// use the `Encoder` API: each container is filled before its parent is written to again. A value
/// that comes back to a container it has left (say, writes into a nested container after writing
/// another key of the parent) or asks for a `superEncoder()` makes ``encode(_:)`` throw
/// ``NonSequentialEncoding``, and ``JSONEventCodec`` encodes that value with Foundation's
/// `JSONEncoder` instead: the output is the same JSON, only slower to make.
///
/// Formats: keys as the `CodingKey`s spell them, in the order written; dates as
/// `2026-11-21T12:00:01.234Z` (UTC, rounded to the millisecond); `Data` as Base64; `URL` as its
/// absolute string; `Decimal` as a number; non-finite floating-point numbers are an
/// `EncodingError`, as in Foundation's default.
struct StreamingJSONEncoder {
    /// Encodes `value` as compact JSON.
    /// - Throws: `EncodingError` for a value JSON cannot hold, or ``NonSequentialEncoding`` for a
    ///   value that uses the `Encoder` API out of order.
    static func encode<Value: Encodable>(_ value: Value) throws -> [UInt8] {
        let state = JSONEncodingState()
        let encoded = try state.encodeValue(value, slot: 0)
        if state.isNonSequential { throw NonSequentialEncoding() }
        guard encoded else {
            throw EncodingError.invalidValue(
                value, .init(codingPath: [], debugDescription: "Top-level \(Value.self) did not encode any values."))
        }
        return state.bytes
    }
}

/// A value used the `Encoder` API out of order (see ``StreamingJSONEncoder``); encode it with a
/// tree-building encoder instead.
struct NonSequentialEncoding: Error {}

/// The output of one encoding and the containers still open in it, innermost last.
final class JSONEncodingState {
    struct OpenContainer {
        let id: Int
        /// Where the container's opening bracket is in ``JSONEncodingState/bytes``.
        let start: Int
        let closer: UInt8
        /// Entries written so far.
        var count: Int
        /// ``JSONEncodingState/path``'s length to go back to when the container closes.
        let pathDepth: Int
    }

    // Unchecked exclusivity: one state belongs to one call of `StreamingJSONEncoder.encode`, on
    // one thread, and no access to these arrays overlaps another (none is held across a call
    // into the value's `encode(to:)`). The dynamic checks cost a third of the encoder's time.
    @exclusivity(unchecked) var bytes: [UInt8] = []
    @exclusivity(unchecked) private(set) var open: [OpenContainer] = []
    /// The coding path of the value being written: the keys of every open entry.
    @exclusivity(unchecked) var path: [any CodingKey] = []
    @exclusivity(unchecked) private var lastID = 0
    private(set) var isNonSequential = false

    init() {
        bytes.reserveCapacity(512)
        // Room for the usual nesting: grown one container at a time, these arrays cost three
        // allocations per event where one does.
        open.reserveCapacity(8)
        path.reserveCapacity(8)
    }

    /// The bracket that closes an object's (`{`) or an array's (`[`) opening one.
    static func closer(of opener: UInt8) -> UInt8 {
        opener == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
    }

    /// Opens an object (`{`) or an array (`[`) at the end of the output.
    func openContainer(_ opener: UInt8, pathDepth: Int) -> Int {
        lastID += 1
        open.append(OpenContainer(id: lastID, start: bytes.count, closer: Self.closer(of: opener), count: 0, pathDepth: pathDepth))
        bytes.append(opener)
        return lastID
    }

    /// Closes every container above the given number of open ones.
    func close(downTo height: Int) {
        while open.count > height {
            let container = open.removeLast()
            bytes.append(container.closer)
            if path.count > container.pathDepth { path.removeLast(path.count - container.pathDepth) }
        }
    }

    /// Makes the container the innermost open one (closing those inside it, which are finished)
    /// and starts its next entry: the comma before it. Returns the entry's position (0-based).
    func beginEntry(in id: Int) throws -> Int {
        if open.last?.id != id {
            guard let position = open.lastIndex(where: { $0.id == id }) else { throw nonSequential() }
            close(downTo: position + 1)
        }
        let last = open.count - 1
        let count = open[last].count
        if count > 0 { bytes.append(UInt8(ascii: ",")) }
        open[last].count = count + 1
        return count
    }

    /// Starts the entry of `key` in the keyed container: comma, key and colon.
    func beginEntry(in id: Int, key: some CodingKey) throws {
        _ = try beginEntry(in: id)
        bytes.appendJSONString(key.stringValue)
        bytes.append(UInt8(ascii: ":"))
    }

    /// The number of entries written to an open container.
    func count(of id: Int) -> Int {
        open.last(where: { $0.id == id })?.count ?? 0
    }

    /// Records that the value used the API out of order and returns the error to throw.
    func nonSequential() -> NonSequentialEncoding {
        isNonSequential = true
        return NonSequentialEncoding()
    }

    /// Writes any value at the end of the output, where `slot` is (a position no other value has
    /// written to yet). Returns false when the value wrote nothing.
    func encodeValue<Value: Encodable>(_ value: Value, slot: Int) throws -> Bool {
        if try encodeSpecial(value) { return true }
        let height = open.count
        let encoder = StreamingEncoder(state: self, slot: slot, openHeight: height, pathDepth: path.count)
        try value.encode(to: encoder)
        close(downTo: height)
        return bytes.count > slot
    }

    /// Writes the scalars and the Foundation types whose JSON form Foundation's `JSONEncoder`
    /// fixes itself (rather than their `encode(to:)`). Returns false for any other type.
    func encodeSpecial<Value: Encodable>(_ value: Value) throws -> Bool {
        // Comparing metatypes is cheap; the casts below only run when the type matched.
        if Value.self == String.self {
            bytes.appendJSONString(value as! String)
        } else if Value.self == Int.self {
            bytes.appendJSONInteger(value as! Int)
        } else if Value.self == Double.self {
            try writeFloatingPoint(value as! Double)
        } else if Value.self == Bool.self {
            writeBool(value as! Bool)
        } else if Value.self == Date.self {
            try writeDate(value as! Date)
        } else if Value.self == Data.self {
            bytes.appendJSONString((value as! Data).base64EncodedString())
        } else if Value.self == URL.self {
            bytes.appendJSONString((value as! URL).absoluteString)
        } else if Value.self == Decimal.self {
            bytes.append(contentsOf: (value as! Decimal).description.utf8)
        } else {
            return false
        }
        return true
    }

    func writeBool(_ value: Bool) {
        bytes.append(contentsOf: value ? "true".utf8 : "false".utf8)
    }

    func writeNull() {
        bytes.append(contentsOf: "null".utf8)
    }

    func writeFloatingPoint<Value: BinaryFloatingPoint & LosslessStringConvertible>(_ value: Value) throws {
        guard value.isFinite else {
            throw EncodingError.invalidValue(
                value, .init(codingPath: path, debugDescription: "Unable to encode \(Value.self).\(value) directly in JSON."))
        }
        bytes.appendJSONFloatingPoint(value)
    }

    func writeDate(_ date: Date) throws {
        guard let milliseconds = ISO8601Milliseconds.milliseconds(of: date) else {
            // The seconds, not the date: Foundation's Date.description traps on infinite dates.
            throw EncodingError.invalidValue(
                date.timeIntervalSince1970,
                .init(
                    codingPath: path,
                    debugDescription: "\(date.timeIntervalSince1970) s since 1970 is no moment ISO 8601 can write"))
        }
        if milliseconds < ISO8601Milliseconds.gregorian, let text = FoundationJSONEventCodec.format(date) {
            bytes.appendJSONString(text)  // before 1583: as Foundation's (Julian) calendar writes it
            return
        }
        bytes.append(UInt8(ascii: "\""))
        ISO8601Milliseconds.write(milliseconds: milliseconds, into: &bytes)
        bytes.append(UInt8(ascii: "\""))
    }
}

/// The `Encoder` handed to one value's `encode(to:)`: the value goes at `slot`, right after the
/// key or comma its container wrote. Three words, so it fits an existential without a box.
struct StreamingEncoder: Encoder {
    let state: JSONEncodingState
    let slot: Int
    private let depths: (open: Int32, path: Int32)

    init(state: JSONEncodingState, slot: Int, openHeight: Int, pathDepth: Int) {
        self.state = state
        self.slot = slot
        self.depths = (Int32(truncatingIfNeeded: openHeight), Int32(truncatingIfNeeded: pathDepth))
    }

    var openHeight: Int { Int(depths.open) }
    var codingPath: [any CodingKey] { Array(state.path.prefix(Int(depths.path))) }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(StreamingKeyedContainer<Key>(state: state, id: containerID(opener: UInt8(ascii: "{"))))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        StreamingUnkeyedContainer(state: state, id: containerID(opener: UInt8(ascii: "[")))
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        StreamingSingleValueContainer(encoder: self)
    }

    /// The container this encoder's value writes into: a new one when the value has written
    /// nothing yet, the same one when it asks again (a subclass and its superclass sharing one),
    /// and 0 (no container: every write throws) when it asks for anything else.
    private func containerID(opener: UInt8) -> Int {
        guard slot >= 0 else {
            _ = state.nonSequential()
            return 0
        }
        if state.bytes.count == slot, state.open.count == openHeight {
            return state.openContainer(opener, pathDepth: Int(depths.path))
        }
        if state.open.count > openHeight, state.open[openHeight].start == slot,
            state.open[openHeight].closer == JSONEncodingState.closer(of: opener)
        {
            state.close(downTo: openHeight + 1)
            return state.open[openHeight].id
        }
        _ = state.nonSequential()
        return 0
    }
}

/// An `Encoder` for nothing: handed out where the streaming encoder cannot follow (a
/// `superEncoder()`); it records that the value must be encoded another way.
private func refusingEncoder(_ state: JSONEncodingState) -> any Encoder {
    _ = state.nonSequential()
    return StreamingEncoder(state: state, slot: -1, openHeight: -1, pathDepth: state.path.count)
}

/// A JSON object being written.
struct StreamingKeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let state: JSONEncodingState
    let id: Int

    var codingPath: [any CodingKey] {
        state.path.prefix(state.open.last(where: { $0.id == id })?.pathDepth ?? state.path.count).map { $0 }
    }

    mutating func encodeNil(forKey key: Key) throws {
        try state.beginEntry(in: id, key: key)
        state.writeNull()
    }

    mutating func encode(_ value: Bool, forKey key: Key) throws {
        try state.beginEntry(in: id, key: key)
        state.writeBool(value)
    }

    mutating func encode(_ value: String, forKey key: Key) throws {
        try state.beginEntry(in: id, key: key)
        state.bytes.appendJSONString(value)
    }

    mutating func encode(_ value: Double, forKey key: Key) throws {
        try state.beginEntry(in: id, key: key)
        try withKey(key) { try state.writeFloatingPoint(value) }
    }

    mutating func encode(_ value: Float, forKey key: Key) throws {
        try state.beginEntry(in: id, key: key)
        try withKey(key) { try state.writeFloatingPoint(value) }
    }

    mutating func encode(_ value: Int, forKey key: Key) throws { try integer(value, key) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { try integer(value, key) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { try integer(value, key) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { try integer(value, key) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { try integer(value, key) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { try integer(value, key) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { try integer(value, key) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { try integer(value, key) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { try integer(value, key) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { try integer(value, key) }
    @available(macOS 15.0, iOS 18.0, watchOS 11.0, tvOS 18.0, visionOS 2.0, *)
    mutating func encode(_ value: Int128, forKey key: Key) throws { try integer(value, key) }
    @available(macOS 15.0, iOS 18.0, watchOS 11.0, tvOS 18.0, visionOS 2.0, *)
    mutating func encode(_ value: UInt128, forKey key: Key) throws { try integer(value, key) }

    private func integer(_ value: some BinaryInteger, _ key: Key) throws {
        try state.beginEntry(in: id, key: key)
        state.bytes.appendJSONInteger(value)
    }

    mutating func encode<Value: Encodable>(_ value: Value, forKey key: Key) throws {
        try state.beginEntry(in: id, key: key)
        let slot = state.bytes.count
        try withKey(key) {
            if try !state.encodeValue(value, slot: slot) { state.bytes.append(contentsOf: "{}".utf8) }
        }
    }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type, forKey key: Key
    ) -> KeyedEncodingContainer<NestedKey> {
        KeyedEncodingContainer(StreamingKeyedContainer<NestedKey>(state: state, id: nested(UInt8(ascii: "{"), key)))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        StreamingUnkeyedContainer(state: state, id: nested(UInt8(ascii: "["), key))
    }

    mutating func superEncoder() -> any Encoder { refusingEncoder(state) }
    mutating func superEncoder(forKey key: Key) -> any Encoder { refusingEncoder(state) }

    /// Opens a container as the value of `key`; 0 when this container is no longer open.
    private func nested(_ opener: UInt8, _ key: Key) -> Int {
        do { try state.beginEntry(in: id, key: key) } catch { return 0 }
        let depth = state.path.count
        state.path.append(key)
        return state.openContainer(opener, pathDepth: depth)
    }

    private func withKey(_ key: Key, _ body: () throws -> Void) throws {
        state.path.append(key)
        defer { state.path.removeLast() }
        try body()
    }
}

/// A JSON array being written.
struct StreamingUnkeyedContainer: UnkeyedEncodingContainer {
    let state: JSONEncodingState
    let id: Int

    var codingPath: [any CodingKey] {
        state.path.prefix(state.open.last(where: { $0.id == id })?.pathDepth ?? state.path.count).map { $0 }
    }
    var count: Int { state.count(of: id) }

    mutating func encodeNil() throws {
        _ = try state.beginEntry(in: id)
        state.writeNull()
    }

    mutating func encode(_ value: Bool) throws {
        _ = try state.beginEntry(in: id)
        state.writeBool(value)
    }

    mutating func encode(_ value: String) throws {
        _ = try state.beginEntry(in: id)
        state.bytes.appendJSONString(value)
    }

    mutating func encode(_ value: Double) throws {
        let index = try state.beginEntry(in: id)
        try withIndex(index) { try state.writeFloatingPoint(value) }
    }

    mutating func encode(_ value: Float) throws {
        let index = try state.beginEntry(in: id)
        try withIndex(index) { try state.writeFloatingPoint(value) }
    }

    mutating func encode(_ value: Int) throws { try integer(value) }
    mutating func encode(_ value: Int8) throws { try integer(value) }
    mutating func encode(_ value: Int16) throws { try integer(value) }
    mutating func encode(_ value: Int32) throws { try integer(value) }
    mutating func encode(_ value: Int64) throws { try integer(value) }
    mutating func encode(_ value: UInt) throws { try integer(value) }
    mutating func encode(_ value: UInt8) throws { try integer(value) }
    mutating func encode(_ value: UInt16) throws { try integer(value) }
    mutating func encode(_ value: UInt32) throws { try integer(value) }
    mutating func encode(_ value: UInt64) throws { try integer(value) }
    @available(macOS 15.0, iOS 18.0, watchOS 11.0, tvOS 18.0, visionOS 2.0, *)
    mutating func encode(_ value: Int128) throws { try integer(value) }
    @available(macOS 15.0, iOS 18.0, watchOS 11.0, tvOS 18.0, visionOS 2.0, *)
    mutating func encode(_ value: UInt128) throws { try integer(value) }

    private func integer(_ value: some BinaryInteger) throws {
        _ = try state.beginEntry(in: id)
        state.bytes.appendJSONInteger(value)
    }

    mutating func encode<Value: Encodable>(_ value: Value) throws {
        let index = try state.beginEntry(in: id)
        let slot = state.bytes.count
        try withIndex(index) {
            if try !state.encodeValue(value, slot: slot) { state.bytes.append(contentsOf: "{}".utf8) }
        }
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        KeyedEncodingContainer(StreamingKeyedContainer<NestedKey>(state: state, id: nested(UInt8(ascii: "{"))))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        StreamingUnkeyedContainer(state: state, id: nested(UInt8(ascii: "[")))
    }

    mutating func superEncoder() -> any Encoder { refusingEncoder(state) }

    private func nested(_ opener: UInt8) -> Int {
        guard let index = try? state.beginEntry(in: id) else { return 0 }
        let depth = state.path.count
        state.path.append(JSONIndexKey(index))
        return state.openContainer(opener, pathDepth: depth)
    }

    private func withIndex(_ index: Int, _ body: () throws -> Void) throws {
        state.path.append(JSONIndexKey(index))
        defer { state.path.removeLast() }
        try body()
    }
}

/// The value of one encoder, written once.
struct StreamingSingleValueContainer: SingleValueEncodingContainer {
    let encoder: StreamingEncoder
    var state: JSONEncodingState { encoder.state }
    var codingPath: [any CodingKey] { encoder.codingPath }

    /// Checks that nothing was written for this value yet.
    private func begin() throws {
        guard state.bytes.count == encoder.slot, state.open.count == encoder.openHeight else { throw state.nonSequential() }
    }

    mutating func encodeNil() throws {
        try begin()
        state.writeNull()
    }

    mutating func encode(_ value: Bool) throws {
        try begin()
        state.writeBool(value)
    }

    mutating func encode(_ value: String) throws {
        try begin()
        state.bytes.appendJSONString(value)
    }

    mutating func encode(_ value: Double) throws {
        try begin()
        try state.writeFloatingPoint(value)
    }

    mutating func encode(_ value: Float) throws {
        try begin()
        try state.writeFloatingPoint(value)
    }

    mutating func encode(_ value: Int) throws { try integer(value) }
    mutating func encode(_ value: Int8) throws { try integer(value) }
    mutating func encode(_ value: Int16) throws { try integer(value) }
    mutating func encode(_ value: Int32) throws { try integer(value) }
    mutating func encode(_ value: Int64) throws { try integer(value) }
    mutating func encode(_ value: UInt) throws { try integer(value) }
    mutating func encode(_ value: UInt8) throws { try integer(value) }
    mutating func encode(_ value: UInt16) throws { try integer(value) }
    mutating func encode(_ value: UInt32) throws { try integer(value) }
    mutating func encode(_ value: UInt64) throws { try integer(value) }
    @available(macOS 15.0, iOS 18.0, watchOS 11.0, tvOS 18.0, visionOS 2.0, *)
    mutating func encode(_ value: Int128) throws { try integer(value) }
    @available(macOS 15.0, iOS 18.0, watchOS 11.0, tvOS 18.0, visionOS 2.0, *)
    mutating func encode(_ value: UInt128) throws { try integer(value) }

    private func integer(_ value: some BinaryInteger) throws {
        try begin()
        state.bytes.appendJSONInteger(value)
    }

    mutating func encode<Value: Encodable>(_ value: Value) throws {
        try begin()
        if try !state.encodeValue(value, slot: encoder.slot) { state.bytes.append(contentsOf: "{}".utf8) }
    }
}

/// The coding-path key of an array element.
struct JSONIndexKey: CodingKey {
    let index: Int

    init(_ index: Int) { self.index = index }
    init?(intValue: Int) { self.init(intValue) }

    var intValue: Int? { index }
    // Computed: an element's key is made for every element written, its text only for an error.
    var stringValue: String { "Index \(index)" }
    init?(stringValue: String) { nil }
}
