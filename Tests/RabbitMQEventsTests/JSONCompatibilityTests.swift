import Foundation
import Testing

@testable import RabbitMQEvents

/// The fast JSON codec against Foundation's, on generated values and on mutated texts: each reads
/// what the other writes, and both read the same texts the same way.
@Suite("JSON codec compatibility with Foundation")
struct JSONCompatibilityTests {
    let fast = JSONEventCodec()
    let foundation = FoundationJSONEventCodec()

    @Test(arguments: 0..<8)
    func generatedEventsReadTheSameInBothCodecs(seed: UInt64) throws {
        var random = SplitMix(seed: seed)
        for round in 0..<150 {
            let sample = Sample.random(using: &random)
            let context = Comment(rawValue: "seed \(seed), round \(round)")
            let fastBody = try fast.encode(sample)
            let foundationBody = try foundation.encode(sample)
            #expect(try foundation.decode(Sample.self, from: fastBody).normalized == sample, context)
            #expect(try fast.decode(Sample.self, from: foundationBody).normalized == sample, context)
            #expect(try fast.decode(Sample.self, from: fastBody).normalized == sample, context)
            // The same JSON document, whatever the order of keys: both read by Foundation into
            // a generic JSON value.
            #expect(try Self.document(fastBody) == Self.document(foundationBody), "\(context)")
        }
    }

    @Test(arguments: 0..<8)
    func mutatedTextsAreReadOrRefusedAsFoundationDoes(seed: UInt64) throws {
        var random = SplitMix(seed: 1000 + seed)
        var bothRead = 0
        for round in 0..<400 {
            var body = try fast.encode(Sample.random(using: &random))
            for _ in 0...random.below(3) { body.mutate(using: &random) }
            let text = String(decoding: body, as: UTF8.self)
            let expected = Result { try foundation.decode(Sample.self, from: body).normalized }
            let actual = Result { try fast.decode(Sample.self, from: body).normalized }
            switch (expected, actual) {
            case (.success(let expected), .success(let actual)):
                #expect(actual == expected, "seed \(seed), round \(round): \(text)")
                bothRead += 1
            case (.failure(let expected), .failure(let actual)):
                #expect(Self.kind(of: actual) == Self.kind(of: expected), "seed \(seed), round \(round): \(text)\n\(expected)\n\(actual)")
            case (.success, .failure(let error)):
                Issue.record("seed \(seed), round \(round): Foundation read it, the fast codec refused: \(error)\n\(body)")
            case (.failure(let error), .success):
                Issue.record("seed \(seed), round \(round): the fast codec read it, Foundation refused: \(error)\n\(body)")
            }
        }
        #expect(bothRead > 0, "no mutation left a readable text: the comparison of values never ran")
    }

    @Test func arbitraryBytesAreAnErrorNotACrash() {
        var random = SplitMix(seed: 7)
        let alphabet = Array(#"{}[],:"\ 0123456789.eE+-truefalsnl"#.utf8) + [0x00, 0x1F, 0x7F, 0xC3, 0xA9, 0xED, 0xA0, 0xFF]
        for _ in 0..<5000 {
            let body = (0..<random.below(40)).map { _ in alphabet[random.below(alphabet.count)] }
            let expected = Result { try foundation.decode(Sample.self, from: body) }
            let actual = Result { try fast.decode(Sample.self, from: body) }
            // Foundation also reads UTF-16 and UTF-32 (the bytes 9, 0 are a "9" to it): compare only
            // that what the fast codec reads, Foundation reads the same way.
            if case .success(let actual) = actual {
                #expect(actual == (try? expected.get()), "\(body)")
            }
        }
        let deep = Array(String(repeating: "[", count: 100_000).utf8)
        #expect(throws: DecodingError.self) { try fast.decode(Sample.self, from: deep) }
    }

    @Test func typeErrorsNameTheSamePathAsFoundation() throws {
        let cases: [String] = [
            #"{"text":1}"#,  // a number for a String
            #"{"text":"a","int":null}"#,  // null for an Int
            #"{"text":"a","int":1.5}"#,  // not whole
            #"{"text":"a","int":1,"int8":300}"#,  // out of range
            #"{"text":"a","int":1,"int8":1,"uint64":-1}"#,
            #"{"text":"a","int":1,"int8":1,"uint64":1,"int64":1,"double":"x"}"#,
        ]
        for text in cases {
            let body = Array(text.utf8)
            let expected = Result { try foundation.decode(Sample.self, from: body) }
            let actual = Result { try fast.decode(Sample.self, from: body) }
            guard case .failure(let expectedError) = expected, case .failure(let actualError) = actual else {
                Issue.record("\(text): both should fail (Foundation \(expected), fast \(actual))")
                continue
            }
            #expect(Self.kind(of: actualError) == Self.kind(of: expectedError), "\(text)")
            // Foundation gives a number it cannot represent no path ("not valid JSON"); the fast
            // codec names the key, which is more use to whoever reads the error.
            if Self.kind(of: expectedError) != "dataCorrupted" {
                #expect(Self.path(of: actualError) == Self.path(of: expectedError), "\(text): \(actualError)")
            }
        }
        // A missing key: the key and where it was looked for.
        let missing = #"{"text":"a","nested":{"name":"n"}}"#
        #expect(throws: DecodingError.self) { try fast.decode(Sample.self, from: Array(missing.utf8)) }
    }

    @Test func numbersReadAsFoundationReadsThem() throws {
        struct Numbers: AMQPEvent, Equatable {
            static let eventType = "Numbers"
            static let routingKey = "numbers"
            var int: Int
            var double: Double
        }
        for text in [
            #"{"int":1.0,"double":1}"#, #"{"int":1e2,"double":1E2}"#, #"{"int":-0,"double":-0.0}"#,
            #"{"int":9223372036854775807,"double":123456789012345678901234567890}"#,
            #"{"int":1,"double":5e-324}"#, #"{"int":1,"double":1e-400}"#, #"{"int":1,"double":1e400}"#,
            #"{"int":9223372036854775808,"double":1}"#, #"{"int":01,"double":1}"#, #"{"int":1,"double":.5}"#,
            #"{"int":1,"double":1.}"#, #"{"int":1,"double":-}"#, #"{"int":+1,"double":1}"#,
        ] {
            let body = Array(text.utf8)
            let expected = Result { try foundation.decode(Numbers.self, from: body) }
            let actual = Result { try fast.decode(Numbers.self, from: body) }
            switch (expected, actual) {
            case (.success(let expected), .success(let actual)): #expect(actual == expected, "\(text)")
            case (.failure(let expected), .failure(let actual)): #expect(Self.kind(of: actual) == Self.kind(of: expected), "\(text)")
            default: Issue.record("\(text): Foundation \(expected), fast \(actual)")
            }
        }
    }

    @Test func typesThatEncodeOutOfOrderAreEncodedThroughFoundation() throws {
        for event in [OutOfOrder(first: "a", second: 2), OutOfOrder(first: "", second: -1)] {
            let body = try fast.encode(event)
            #expect(try foundation.decode(OutOfOrder.self, from: body) == event)
            #expect(try fast.decode(OutOfOrder.self, from: body) == event)
        }
        let derived = Derived(base: 1, extra: "x")
        let body = try fast.encode(derived)
        #expect(String(decoding: body, as: UTF8.self) == #"{"extra":"x","base":1}"#)
        let decoded = try fast.decode(Derived.self, from: body)
        #expect(decoded.base == 1 && decoded.extra == "x")
        let withSuper = try fast.encode(WithSuperEncoder(value: 3))
        #expect(try foundation.decode(WithSuperEncoder.self, from: withSuper).value == 3)
        #expect(try fast.decode(WithSuperEncoder.self, from: withSuper).value == 3)
    }

    @Test func stringsWithEveryKindOfCharacterSurviveBothWays() throws {
        struct Text: AMQPEvent, Equatable {
            static let eventType = "Text"
            static let routingKey = "text"
            var value: String
        }
        var all = (0..<0x80).map { String(UnicodeScalar(UInt8($0))) }.joined()
        all += "é€😀\u{2028}\u{2029}\u{FEFF}a\u{301}\u{10FFFF}\u{E000}"
        for value in [all, "", "\"", "\\", "/", "\u{0}", String(repeating: "😀", count: 100)] {
            #expect(try foundation.decode(Text.self, from: fast.encode(Text(value: value))) == Text(value: value))
            #expect(try fast.decode(Text.self, from: foundation.encode(Text(value: value))) == Text(value: value))
        }
        // Escapes Foundation's encoder does not write but others do.
        let escaped = #"{"value":"\u00e9\ud83d\ude00\/\b\f\n\r\t\"\\\u0041"}"#
        #expect(try fast.decode(Text.self, from: Array(escaped.utf8)) == foundation.decode(Text.self, from: Array(escaped.utf8)))
        for refused in [#"{"value":"\ud83d"}"#, #"{"value":"\ude00"}"#, #"{"value":"\x"}"#, "{\"value\":\"\u{1}\"}"] {
            #expect(throws: DecodingError.self) { try fast.decode(Text.self, from: Array(refused.utf8)) }
            #expect(throws: DecodingError.self) { try foundation.decode(Text.self, from: Array(refused.utf8)) }
        }
        #expect(throws: DecodingError.self) { try fast.decode(Text.self, from: [0x7B, 0x22, 0x76, 0x22, 0x3A, 0x22, 0xFF, 0x22, 0x7D]) }
    }

    @Test func datesAreWrittenAndReadLikeFoundationsISO8601() throws {
        var random = SplitMix(seed: 11)
        let wholeSeconds = Date.ISO8601FormatStyle(timeZone: .gmt)
        for _ in 0..<2000 {
            let seconds = Int64(random.below(Int(ISO8601Milliseconds.end / 1000 - ISO8601Milliseconds.gregorian / 1000)))
                + ISO8601Milliseconds.gregorian / 1000
            let date = Date(timeIntervalSince1970: Double(seconds))
            var bytes: [UInt8] = []
            ISO8601Milliseconds.write(milliseconds: seconds * 1000, into: &bytes)
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(text == date.formatted(wholeSeconds).dropLast() + ".000Z")
            let parsed = bytes.withUnsafeBufferPointer(ISO8601Milliseconds.parse)
            #expect(parsed == seconds * 1000, "\(text)")
            let wholeText = Array(date.formatted(wholeSeconds).utf8)
            #expect(wholeText.withUnsafeBufferPointer(ISO8601Milliseconds.parse) == seconds * 1000)
        }
        for invalid in ["1582-12-31T23:59:59Z", "2026-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-11-21T24:00:00Z", "2026-11-21T12:00:01.2Z",
            "2026-11-21 12:00:01Z", "2026-11-21T12:00:01.234+01:00"]
        {
            #expect(Array(invalid.utf8).withUnsafeBufferPointer(ISO8601Milliseconds.parse) == nil, "\(invalid)")
        }
        // Spellings the fast path leaves to Foundation's parser are still read.
        struct Stamp: AMQPEvent {
            static let eventType = "Stamp"
            static let routingKey = "stamp"
            var at: Date
        }
        // Before 1583, Foundation's calendar is Julian: both codecs write and read those dates as
        // Foundation's formatter does.
        for milliseconds in [ISO8601Milliseconds.earliest, -40_000_000_000_000, ISO8601Milliseconds.gregorian - 1] {
            let stamp = Stamp(at: Date(timeIntervalSince1970: Double(milliseconds) / 1000))
            let body = try fast.encode(stamp)
            #expect(body == (try foundation.encode(stamp)))
            #expect(try fast.decode(Stamp.self, from: body).at == foundation.decode(Stamp.self, from: body).at)
        }
        for text in ["2026-11-21T13:00:01.5+01:00", "2026-11-21T12:00:01.500000Z"] {
            let body = Array(#"{"at":"\#(text)"}"#.utf8)
            let expected = try foundation.decode(Stamp.self, from: body).at
            #expect(try fast.decode(Stamp.self, from: body).at == expected, "\(text)")
        }
    }

    /// A JSON text as a generic value, read by Foundation's decoder.
    static func document(_ body: [UInt8]) throws -> JSONDocument {
        try JSONDecoder().decode(JSONDocument.self, from: Data(body))
    }

    /// The case of a decoding error, to compare two decoders' verdicts.
    static func kind(of error: any Error) -> String {
        guard let error = error as? DecodingError else { return "not a DecodingError: \(error)" }
        switch error {
        case .typeMismatch: return "typeMismatch"
        case .valueNotFound: return "valueNotFound"
        case .keyNotFound: return "keyNotFound"
        case .dataCorrupted: return "dataCorrupted"
        @unknown default: return "unknown"
        }
    }

    static func path(of error: any Error) -> [String] {
        let context: DecodingError.Context?
        switch error as? DecodingError {
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .keyNotFound(_, let c), .dataCorrupted(let c): context = c
        default: context = nil
        }
        return context?.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue } ?? []
    }
}

/// Any JSON value, to compare two texts whatever the order of their keys.
indirect enum JSONDocument: Decodable, Equatable {
    case object([String: JSONDocument])
    case array([JSONDocument])
    case string(String)
    case integer(Int64)
    case unsigned(UInt64)
    case number(Double)
    case bool(Bool)
    case null

    init(from decoder: any Decoder) throws {
        let single = try decoder.singleValueContainer()
        if single.decodeNil() {
            self = .null
        } else if let value = try? single.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? single.decode(Int64.self) {
            self = .integer(value)
        } else if let value = try? single.decode(UInt64.self) {
            self = .unsigned(value)
        } else if let value = try? single.decode(Double.self) {
            self = .number(value)
        } else if let value = try? single.decode(String.self) {
            self = .string(value)
        } else if let value = try? single.decode([JSONDocument].self) {
            self = .array(value)
        } else {
            self = .object(try single.decode([String: JSONDocument].self))
        }
    }
}

// MARK: - Generated values

/// Bounded draws from the suite's seedable generator (see `OrderedLanesTests`), so a failing
/// round can be replayed from its seed.
extension SplitMix {
    mutating func below(_ bound: Int) -> Int { bound <= 0 ? 0 : Int(next() % UInt64(bound)) }
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
}

extension String {
    static let oddScalars: [Unicode.Scalar] = Array("aZ09 \"\\/\u{0}\u{1}\u{8}\u{9}\u{A}\u{C}\u{D}\u{1F}\u{7F}é€😀\u{301}\u{2028}\u{2029}\u{FEFF}\u{10FFFF}\u{E000}".unicodeScalars)

    static func random(using random: inout SplitMix) -> String {
        var text = String.UnicodeScalarView()
        for _ in 0..<random.below(24) {
            text.append(random.chance(60) ? Unicode.Scalar(UInt8(0x61 + random.below(26))) : oddScalars[random.below(oddScalars.count)])
        }
        return String(text)
    }
}

struct Nested: Codable, Equatable {
    var name: String
    var quantity: Int?
    var tags: [String]
}

enum Kind: String, Codable, Equatable, CaseIterable {
    case placed, cancelled, shipped
}

enum Choice: Codable, Equatable {
    case none
    case one(Int)
    case pair(label: String, value: Double)
}

/// A value kept in a single-value container.
struct Wrapper: Codable, Equatable {
    var raw: Int64
    init(raw: Int64) { self.raw = raw }
    init(from decoder: any Decoder) throws { raw = try decoder.singleValueContainer().decode(Int64.self) }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(raw)
    }
}

struct Empty: Codable, Equatable {}

/// Every shape the codec must handle: scalars of each width, optionals, dates, `Data`, `URL`,
/// `Decimal`, nested and unkeyed containers, dictionaries, enums with and without payloads.
struct Sample: AMQPEvent, Equatable {
    static let eventType = "Sample"
    static let routingKey = "sample"

    var text: String
    var int: Int
    var int8: Int8
    var uint64: UInt64
    var int64: Int64
    var double: Double
    var float: Float
    var flag: Bool
    var optionalText: String?
    var date: Date
    var optionalDate: Date?
    var data: Data
    var url: URL?
    var decimal: Decimal?
    var nested: Nested
    var list: [Nested]
    var matrix: [[Int]]
    var map: [String: Double]
    var numbered: [Int: String]
    var optionals: [String?]
    var kind: Kind
    var choice: Choice
    var wrapper: Wrapper
    var empty: Empty
    var set: Set<Int>?

    /// Dates rounded to the millisecond (what the JSON holds), so decoded and original compare.
    var normalized: Sample {
        var copy = self
        copy.date = Self.milliseconds(date)
        copy.optionalDate = optionalDate.map(Self.milliseconds)
        return copy
    }

    private static func milliseconds(_ date: Date) -> Date {
        Date(timeIntervalSince1970: (date.timeIntervalSince1970 * 1000).rounded() / 1000)
    }

    static func random(using random: inout SplitMix) -> Sample {
        func double() -> Double {
            switch random.below(4) {
            case 0: return Double(random.below(2_000_001) - 1_000_000) / 100
            case 1: return [0, -0.0, .leastNonzeroMagnitude, .greatestFiniteMagnitude, -.leastNormalMagnitude, 1e-7, 0.1, 1e21][random.below(8)]
            default:
                var value = Double(bitPattern: random.next())
                while !value.isFinite { value = Double(bitPattern: random.next()) }
                return value
            }
        }
        func float() -> Float {
            var value = Float(bitPattern: UInt32(truncatingIfNeeded: random.next()))
            while !value.isFinite { value = Float(bitPattern: UInt32(truncatingIfNeeded: random.next())) }
            return value
        }
        func date() -> Date {
            let span = UInt64(ISO8601Milliseconds.end - ISO8601Milliseconds.earliest)
            let milliseconds = random.chance(50)
                ? 1_700_000_000_000 + Int64(random.below(100_000_000_000))
                : ISO8601Milliseconds.earliest + Int64(random.next() % span)
            return Date(timeIntervalSince1970: Double(milliseconds) / 1000)
        }
        func nested() -> Nested {
            Nested(
                name: .random(using: &random), quantity: random.chance(50) ? random.below(1000) - 500 : nil,
                tags: (0..<random.below(4)).map { _ in .random(using: &random) })
        }
        let choices: [Choice] = [.none, .one(random.below(100)), .pair(label: .random(using: &random), value: double())]
        let urls = ["https://example.com/orders/1?expand=items#top", "file:///var/lib/x", "urn:isbn:0451450523", "http://[::1]:8080/"]
        return Sample(
            text: .random(using: &random),
            int: Int(bitPattern: UInt(random.next())) >> random.below(64),
            int8: Int8(truncatingIfNeeded: random.next()),
            uint64: random.next() >> random.below(64),
            int64: random.chance(10) ? .min : Int64(bitPattern: random.next()),
            double: double(),
            float: float(),
            flag: random.chance(50),
            optionalText: random.chance(50) ? .random(using: &random) : nil,
            date: date(),
            optionalDate: random.chance(50) ? date() : nil,
            data: Data((0..<random.below(20)).map { _ in UInt8(truncatingIfNeeded: random.next()) }),
            url: random.chance(70) ? URL(string: urls[random.below(urls.count)]) : nil,
            decimal: random.chance(70)
                ? Decimal(sign: random.chance(50) ? .minus : .plus, exponent: random.below(20) - 10, significand: Decimal(random.below(1_000_000)))
                : nil,
            nested: nested(),
            list: (0..<random.below(4)).map { _ in nested() },
            matrix: (0..<random.below(3)).map { _ in (0..<random.below(4)).map { _ in random.below(100) } },
            map: Dictionary(uniqueKeysWithValues: (0..<random.below(4)).map { index in ("\(index)" + .random(using: &random), double()) }),
            numbered: Dictionary(uniqueKeysWithValues: (0..<random.below(4)).map { index in (index * 7 - 5, .random(using: &random)) }),
            optionals: (0..<random.below(4)).map { _ in random.chance(50) ? .random(using: &random) : nil },
            kind: Kind.allCases[random.below(3)],
            choice: choices[random.below(3)],
            wrapper: Wrapper(raw: Int64(bitPattern: random.next())),
            empty: Empty(),
            set: random.chance(50) ? Set((0..<random.below(5)).map { _ in random.below(50) }) : nil)
    }
}

extension Array where Element == UInt8 {
    /// One random edit: a byte replaced by a character that matters in JSON, removed, inserted, or
    /// the text cut short.
    mutating func mutate(using random: inout SplitMix) {
        guard !isEmpty else { return }
        let alphabet = Array(#"{}[],:"\ 0159.eE+-tfnu"#.utf8) + [0x00, 0x1F, 0xC3, 0xFF]
        let position = random.below(count)
        switch random.below(4) {
        case 0: self[position] = alphabet[random.below(alphabet.count)]
        case 1: remove(at: position)
        case 2: insert(alphabet[random.below(alphabet.count)], at: position)
        default: removeLast(random.below(Swift.min(count, 8)) + 1)
        }
    }
}

// MARK: - Types that use the Encoder API in unusual ways

/// Writes into a nested container after writing another key of its parent.
struct OutOfOrder: AMQPEvent, Equatable {
    static let eventType = "OutOfOrder"
    static let routingKey = "out.of.order"
    var first: String
    var second: Int

    enum CodingKeys: String, CodingKey { case inner, second }
    enum InnerKeys: String, CodingKey { case first }

    init(first: String, second: Int) {
        self.first = first
        self.second = second
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        second = try container.decode(Int.self, forKey: .second)
        first = try container.nestedContainer(keyedBy: InnerKeys.self, forKey: .inner).decode(String.self, forKey: .first)
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        var inner = container.nestedContainer(keyedBy: InnerKeys.self, forKey: .inner)
        try container.encode(second, forKey: .second)
        try inner.encode(first, forKey: .first)
    }
}

/// A subclass that shares its superclass's container.
class Base: Codable {
    var base: Int
    init(base: Int) { self.base = base }
    enum CodingKeys: String, CodingKey { case base }
}

final class Derived: Base, AMQPEvent, @unchecked Sendable {
    // @unchecked: a test value, created and read on one task.
    static let eventType = "Derived"
    static let routingKey = "derived"
    var extra: String
    enum ExtraKeys: String, CodingKey { case extra }

    init(base: Int, extra: String) {
        self.extra = extra
        super.init(base: base)
    }

    required init(from decoder: any Decoder) throws {
        extra = try decoder.container(keyedBy: ExtraKeys.self).decode(String.self, forKey: .extra)
        try super.init(from: decoder)
    }

    override func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: ExtraKeys.self)
        try container.encode(extra, forKey: .extra)
        try super.encode(to: encoder)
    }
}

/// Encodes its value through `superEncoder()`.
struct WithSuperEncoder: AMQPEvent {
    static let eventType = "WithSuperEncoder"
    static let routingKey = "with.super"
    var value: Int
    enum CodingKeys: String, CodingKey { case value }

    init(value: Int) { self.value = value }

    init(from decoder: any Decoder) throws {
        value = try decoder.container(keyedBy: CodingKeys.self).superDecoder().singleValueContainer().decode(Int.self)
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        var single = container.superEncoder().singleValueContainer()
        try single.encode(value)
    }
}
