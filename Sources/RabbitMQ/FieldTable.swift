/// An AMQP field table: message headers, queue and exchange arguments, client and server
/// properties.
///
/// A table is a list of entries in the order they travel, as on the wire: a received table keeps
/// its order, duplicate keys and exact bytes, so a message republished with the properties it
/// arrived with goes out byte for byte as it came, and a table you build always encodes the same
/// way. Look values up by key like a dictionary:
///
/// ```swift
/// var arguments: FieldTable = ["x-queue-type": "quorum", "x-max-length": 10_000]
/// arguments["x-delivery-limit"] = 5        // replaces the first entry with the key, or appends
/// let type = arguments["x-queue-type"]?.stringValue
/// ```
///
/// Equality compares the entries in order. Keys are at most 255 bytes; a key whose bytes are not
/// valid UTF-8 (from a legacy publisher) is kept as bytes (``Entry/keyBytes``).
public struct FieldTable: Sendable, Hashable {
    /// One key and its value.
    public struct Entry: Sendable, Hashable {
        /// The key as it travels.
        var exactKey: ExactText
        /// The value.
        public var value: FieldValue

        /// An entry with a UTF-8 key.
        public init(key: String, value: FieldValue) {
            self.exactKey = ExactText(key)
            self.value = value
        }

        /// An entry whose key is the given bytes, valid UTF-8 or not.
        public init(keyBytes: [UInt8], value: FieldValue) {
            self.exactKey = ExactText(bytes: keyBytes)
            self.value = value
        }

        init(exactKey: ExactText, value: FieldValue) {
            self.exactKey = exactKey
            self.value = value
        }

        /// The key as text; if its bytes are not valid UTF-8, invalid sequences read as U+FFFD
        /// (``keyBytes`` has them exactly). Setting it replaces the key.
        public var key: String {
            get { exactKey.string }
            set { exactKey = ExactText(newValue) }
        }

        /// The key's exact bytes.
        public var keyBytes: [UInt8] { exactKey.bytes }
    }

    /// The entries, in order.
    public var entries: [Entry]

    /// The deepest nesting of tables and arrays that is sent and received: a header whose value
    /// is a table counts 1, a table inside it 2, and so on. Deeper values are refused before
    /// anything is sent; a received message nested deeper is rejected to its dead-letter
    /// exchange, because nothing could hold it without changing it.
    public static let maximumDepth = 256

    /// An empty table.
    public init() {
        entries = []
    }

    /// A table of `entries`, duplicates and order kept.
    public init(_ entries: [Entry]) {
        self.entries = entries
    }

    /// The value of the first entry with `key`, or `nil`. Setting a value replaces the first
    /// entry with the key (and removes any later ones with the same key) or appends one;
    /// setting `nil` removes every entry with the key.
    public subscript(key: String) -> FieldValue? {
        get {
            let key = ExactText(key)
            return entries.first { $0.exactKey == key }?.value
        }
        set {
            let key = ExactText(key)
            guard let first = entries.firstIndex(where: { $0.exactKey == key }) else {
                if let newValue { entries.append(Entry(exactKey: key, value: newValue)) }
                return
            }
            if let newValue {
                entries[first].value = newValue
                entries[(first + 1)...].removeAll { $0.exactKey == key }
            } else {
                entries.removeAll { $0.exactKey == key }
            }
        }
    }

    /// Appends an entry, even if the key is already there (as some publishers do).
    public mutating func append(key: String, value: FieldValue) {
        entries.append(Entry(key: key, value: value))
    }

    /// The keys, in order (duplicates included).
    public var keys: [String] { entries.map(\.key) }
}

/// The entries in order: `for entry in headers`, `headers.count`, `headers.first { … }`.
extension FieldTable: RandomAccessCollection {
    /// The first entry's position (0).
    public var startIndex: Int { entries.startIndex }
    /// The position after the last entry.
    public var endIndex: Int { entries.endIndex }
    /// The entry at `position`.
    public subscript(position: Int) -> Entry { entries[position] }
}

extension FieldTable: ExpressibleByDictionaryLiteral {
    /// A table of the literal's entries in the order written (a repeated key is kept twice).
    public init(dictionaryLiteral elements: (String, FieldValue)...) {
        entries = elements.map { Entry(key: $0.0, value: $0.1) }
    }
}

extension FieldTable: CustomStringConvertible {
    /// The entries as a dictionary literal would show them, in order.
    public var description: String {
        guard !entries.isEmpty else { return "[:]" }
        return "[" + entries.map { "\($0.key.debugDescription): \($0.value)" }.joined(separator: ", ") + "]"
    }
}
