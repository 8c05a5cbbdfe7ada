import Foundation
import OrderEvents
import RabbitMQEvents
import Testing

@Suite("Event codec and handler routing")
struct EventCodecTests {
    @Test func jsonUsesDeclaredKeysAndISO8601WithMilliseconds() throws {
        let order = OrderCreated(
            orderID: "ord-1", customerID: "cust-1", items: [OrderItem(sku: "SKU-1", quantity: 2, price: 19.99)],
            createdAt: Date(timeIntervalSince1970: 1_795_780_801.234))
        let body = try JSONEventCodec().encode(order)
        let text = String(decoding: body, as: UTF8.self)
        #expect(text.contains(#""orderID":"ord-1""#))
        #expect(text.contains(#""createdAt":"2026-11-27T12:00:01.234Z""#), "\(text)")
        #expect(!text.contains("\n"))
        let decoded = try JSONEventCodec().decode(OrderCreated.self, from: body)
        #expect(decoded.orderID == order.orderID && decoded.items == order.items)
        #expect(abs(decoded.createdAt.timeIntervalSince(order.createdAt)) < 0.0005)
        #expect(JSONEventCodec().contentType == "application/json")
    }

    @Test func decodingAcceptsWholeSecondDatesAndRejectsGarbage() throws {
        let json = #"{"orderID":"o","customerID":"c","items":[],"createdAt":"2026-11-21T12:00:01Z"}"#
        let order = try JSONEventCodec().decode(OrderCreated.self, from: Array(json.utf8))
        #expect(order.createdAt == Date(timeIntervalSince1970: 1_795_262_401))
        let bad = #"{"orderID":"o","customerID":"c","items":[],"createdAt":"yesterday"}"#
        #expect(throws: DecodingError.self) { try JSONEventCodec().decode(OrderCreated.self, from: Array(bad.utf8)) }
        #expect(throws: DecodingError.self) { try JSONEventCodec().decode(OrderCreated.self, from: Array("{".utf8)) }
    }

    @Test(arguments: [
        (0.0, "1970-01-01T00:00:00.000Z"), (0.0006, "1970-01-01T00:00:00.001Z"), (59.9996, "1970-01-01T00:01:00.000Z"),
        (-0.25, "1969-12-31T23:59:59.750Z"), (1_795_262_401.5, "2026-11-21T12:00:01.500Z"),
    ])
    func millisecondsAreRoundedNotTruncated(seconds: Double, text: String) throws {
        struct Stamp: AMQPEvent {
            static let eventType = "Stamp"
            static let routingKey = "stamp"
            var at: Date
        }
        let body = try JSONEventCodec().encode(Stamp(at: Date(timeIntervalSince1970: seconds)))
        #expect(String(decoding: body, as: UTF8.self) == #"{"at":"\#(text)"}"#)
    }

    @Test func aDateThatIsNoMomentIsAnEncodingErrorNotACrash() {
        struct Stamp: AMQPEvent {
            static let eventType = "Stamp"
            static let routingKey = "stamp"
            var at: Date
        }
        for seconds in [Double.infinity, -.infinity, .nan, 1e300] {
            #expect(throws: EncodingError.self) { try JSONEventCodec().encode(Stamp(at: Date(timeIntervalSince1970: seconds))) }
        }
    }

    @Test func typeNamesAndRoutingKeysAreTheDocumentedOnes() {
        #expect(OrderCreated.eventType == "OrderCreated")
        #expect(OrderCreated.routingKey == "order.created")
        #expect(OrderCancelled.routingKey == "order.cancelled")
        #expect(InventoryReserved.routingKey == "inventory.reserved")
    }
}
