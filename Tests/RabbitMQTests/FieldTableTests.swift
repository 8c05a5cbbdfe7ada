import Foundation
import Testing

@testable import RabbitMQ

@Suite("Field tables")
struct FieldTableTests {
    static let everyType: FieldTable = [
        "bool": .bool(true),
        "int8": .int8(-8), "uint8": .uint8(200),
        "int16": .int16(-1600), "uint16": .uint16(60_000),
        "int32": .int32(-320_000), "uint32": .uint32(4_000_000_000),
        "int64": .int64(-64_000_000_000), "uint64": .uint64(.max),
        "float": .float(1.5), "double": .double(-2.25),
        "decimal": .decimal(scale: 2, value: -12345),
        "string": "héllo", "empty": "", "latin1": .invalidUTF8String([0x63, 0x61, 0x66, 0xE9]),
        "bytes": .bytes([0, 1, 2, 255]),
        "timestamp": .timestamp(AMQPTimestamp(secondsSince1970: 1_790_000_000)),
        "before1970": .timestamp(AMQPTimestamp(secondsSince1970: -1000)),
        "table": ["nested": ["deeper": 1], "list": [1, "two", .void]],
        "array": [.int32(1), .array([.bool(false)]), .table(["k": "v"])],
        "void": .void,
    ]

    /// Through librabbitmq's C types and back.
    private func roundTrip(_ table: FieldTable) throws -> FieldTable {
        let arena = CArena()
        let encoded = try arena.table(table)
        return try withExtendedLifetime(arena) { try FieldTable(copying: encoded) }
    }

    @Test func everyTypeSurvivesTheTripThroughLibrabbitmqTypes() throws {
        #expect(try roundTrip(Self.everyType) == Self.everyType)
    }

    @Test func literalsPickTheDocumentedCases() {
        let table: FieldTable = ["s": "x", "i": 1, "d": 1.5, "b": true, "a": [1], "t": ["k": "v"]]
        #expect(table["s"] == .string("x"))
        #expect(table["i"] == .int64(1))
        #expect(table["d"] == .double(1.5))
        #expect(table["b"] == .bool(true))
        #expect(table["a"] == .array([.int64(1)]))
        #expect(table["t"] == .table(["k": .string("v")]))
    }

    @Test func orderAndDuplicateKeysAreKept() throws {
        let table: FieldTable = ["b": 1, "a": 2, "b": 3]
        #expect(table.keys == ["b", "a", "b"])
        #expect(try roundTrip(table) == table)
        #expect(table != ["a": 2, "b": 1, "b": 3])
        // Lookup finds the first, as RabbitMQ does.
        #expect(table["b"] == 1)

        var replaced = table
        replaced["b"] = 4
        #expect(replaced == ["b": 4, "a": 2])
        var removed = table
        removed["b"] = nil
        #expect(removed == ["a": 2])
        var appended = table
        appended["c"] = 5
        appended.append(key: "a", value: 6)
        #expect(appended.keys == ["b", "a", "b", "c", "a"])
    }

    @Test func keysLongerThan255BytesAreRejected() {
        let arena = CArena()
        let error = #expect(throws: AMQPError.self) {
            try arena.table(["ok": ["nested": [String(repeating: "é", count: 128): 1]]])
        }
        #expect(error?.code == .invalidArgument)
        #expect(throws: Never.self) { try arena.table([String(repeating: "k", count: 255): 1]) }
    }

    @Test func unsigned64BitValuesTravelAsTheyAre() throws {
        let table: FieldTable = ["max": .uint64(.max), "small": .uint64(1)]
        #expect(try roundTrip(table) == table)
    }

    @Test func floatsRabbitMQCannotReadAreRefusedNamingTheField() throws {
        for value: FieldValue in [.float(.nan), .float(.infinity), .double(.nan), .double(-.infinity)] {
            let error = #expect(throws: AMQPError.self) { try CArena().table(["outer": ["inner": [value]]]) }
            #expect(error?.code == .invalidArgument)
            #expect(error?.message.contains("inner") == true, "\(String(describing: error))")
            let headers = BasicProperties(headers: ["outer": ["inner": value]])
            let validation = #expect(throws: AMQPError.self) { try headers.validate(frameMax: 131_072) }
            #expect(validation?.message.contains("headers › 'outer' › 'inner'") == true, "\(String(describing: validation))")
        }
        #expect(throws: Never.self) { try CArena().table(["fine": .double(.greatestFiniteMagnitude)]) }
    }

    @Test func nestingIsHeldUpToTheDocumentedLimitAndRefusedBeyond() throws {
        func nested(_ depth: Int) -> FieldTable {
            var value: FieldValue = 1
            for level in 0..<depth { value = level.isMultiple(of: 2) ? .table(["n": value]) : .array([value]) }
            return ["root": value]
        }
        let deepest = nested(FieldTable.maximumDepth)
        #expect(try roundTrip(deepest) == deepest)
        #expect(throws: Never.self) { try BasicProperties(headers: deepest).validate(frameMax: 131_072) }

        let tooDeep = nested(FieldTable.maximumDepth + 1)
        #expect(throws: AMQPError.self) { try CArena().table(tooDeep) }
        let error = #expect(throws: AMQPError.self) { try BasicProperties(headers: tooDeep).validate(frameMax: 131_072) }
        #expect(error?.code == .invalidArgument)
    }

    @Test func accessors() {
        #expect(FieldValue.uint16(7).int64Value == 7)
        #expect(FieldValue.bytes(Array("abc".utf8)).stringValue == "abc")
        #expect(FieldValue.invalidUTF8String([0x63, 0x61, 0x66, 0xE9]).stringValue == "caf\u{FFFD}")
        #expect(FieldValue.longString(bytes: Array("abc".utf8)) == .string("abc"))
        #expect(FieldValue.longString(bytes: [0xE9]) == .invalidUTF8String([0xE9]))
        #expect(FieldValue.table(["a": 1]).tableValue?["a"] == 1)
        #expect(FieldValue.array([1]).arrayValue == [1])
        #expect(FieldValue.string("x").int64Value == nil)
        let entry = FieldTable.Entry(keyBytes: [0x63, 0x61, 0x66, 0xE9], value: .void)
        #expect(entry.key == "caf\u{FFFD}")
        #expect(entry.keyBytes == [0x63, 0x61, 0x66, 0xE9])
        #expect(FieldTable.Entry(keyBytes: Array("ok".utf8), value: .void) == FieldTable.Entry(key: "ok", value: .void))
    }

    @Test func timestampsKeepAll64Bits() throws {
        for raw: UInt64 in [0, 1, UInt64(bitPattern: -1000), 1 << 53 + 1, 1 << 63, .max] {
            let timestamp = AMQPTimestamp(rawValue: raw)
            #expect(try roundTrip(["t": .timestamp(timestamp)])["t"] == .timestamp(timestamp))
        }
        #expect(AMQPTimestamp(rawValue: UInt64(bitPattern: -1000)).date == Date(timeIntervalSince1970: -1000))
        #expect(AMQPTimestamp(Date(timeIntervalSince1970: -0.5))?.secondsSince1970 == -1)
        #expect(AMQPTimestamp(Date(timeIntervalSince1970: 1_790_000_000.75))?.secondsSince1970 == 1_790_000_000)
        #expect(AMQPTimestamp(Date(timeIntervalSince1970: .infinity)) == nil)
        #expect(AMQPTimestamp(Date(timeIntervalSince1970: 1e19)) == nil)
        #expect(AMQPTimestamp(secondsSince1970: -1) < AMQPTimestamp(secondsSince1970: 0))
    }
}
