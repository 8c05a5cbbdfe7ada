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
        "int64": .int64(-64_000_000_000),
        "float": .float(1.5), "double": .double(-2.25),
        "decimal": .decimal(scale: 2, value: 12345),
        "string": "héllo", "empty": "",
        "bytes": .bytes([0, 1, 2, 255]),
        "timestamp": .timestamp(Date(timeIntervalSince1970: 1_790_000_000)),
        "table": ["nested": ["deeper": 1], "list": [1, "two", .void]],
        "array": [.int32(1), .array([.bool(false)]), .table(["k": "v"])],
        "void": .void,
    ]

    @Test func everyTypeSurvivesTheTripThroughLibrabbitmqTypes() throws {
        let arena = CArena()
        let encoded = try arena.table(Self.everyType)
        let decoded = withExtendedLifetime(arena) { FieldTable(copying: encoded) }
        #expect(decoded == Self.everyType)
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

    @Test func keysLongerThan255BytesAreRejected() {
        let arena = CArena()
        let error = #expect(throws: AMQPError.self) {
            try arena.table(["ok": ["nested": [String(repeating: "é", count: 128): 1]]])
        }
        #expect(error?.code == .invalidArgument)
        #expect(throws: Never.self) { try arena.table([String(repeating: "k", count: 255): 1]) }
    }

    @Test func unsigned64BitValuesTravelAsSigned() throws {
        let arena = CArena()
        let encoded = try arena.table(["big": .uint64(UInt64(Int64.max))])
        let decoded = withExtendedLifetime(arena) { FieldTable(copying: encoded) }
        #expect(decoded == ["big": .int64(.max)])
    }

    @Test func unsignedValuesRabbitMQCannotReadAreRejected() {
        let error = #expect(throws: AMQPError.self) { try CArena().table(["big": .uint64(.max)]) }
        #expect(error?.code == .invalidArgument)
    }

    @Test func accessors() {
        #expect(FieldValue.uint16(7).int64Value == 7)
        #expect(FieldValue.bytes(Array("abc".utf8)).stringValue == "abc")
        #expect(FieldValue.table(["a": 1]).tableValue?["a"] == 1)
        #expect(FieldValue.array([1]).arrayValue == [1])
        #expect(FieldValue.string("x").int64Value == nil)
    }

    @Test func deepNestingFromThePeerIsCutOff() throws {
        var value: FieldValue = 1
        for _ in 0..<150 { value = .table(["n": value]) }
        let arena = CArena()
        let encoded = try arena.table(["root": value])
        let decoded = withExtendedLifetime(arena) { FieldTable(copying: encoded, depthLimit: 100) }
        var depth = 0
        var cursor = decoded["root"]
        while case .table(let inner)? = cursor { depth += 1; cursor = inner["n"] }
        #expect(depth < 100)
        #expect(cursor == .void)
    }
}
