internal import CRabbitMQ
import Testing
import WireFixtures

@testable import RabbitMQ

/// What other clients send, decoded by librabbitmq as it decodes a content header, copied into
/// `BasicProperties`, then encoded again for a republish: the bytes must not change, and
/// nothing may crash on the way.
@Suite("Received properties republished")
struct ReceivedPropertiesTests {
    private func republished(_ bytes: [UInt8]) throws -> (BasicProperties, [UInt8]) {
        let (properties, encoded) = try republishedWithoutValidation(bytes)
        try properties.validate(frameMax: 131_072)
        return (properties, encoded)
    }

    private func republishedWithoutValidation(_ bytes: [UInt8]) throws -> (BasicProperties, [UInt8]) {
        let properties = try Librabbitmq.withDecodedProperties(bytes) { try BasicProperties(copying: $0) }
        let arena = CArena()
        let encoded = try withExtendedLifetime(arena) { try Librabbitmq.encode(try properties.cProperties(arena)) }
        return (properties, encoded)
    }

    @Test func aTimestampNear2To64IsRepublishedWithoutCrashing() throws {
        var c = amqp_basic_properties_t()
        c._flags = UInt32(AMQP_BASIC_TIMESTAMP_FLAG)
        c.timestamp = .max
        let received = try BasicProperties(copying: c)
        let sent = try received.cProperties(CArena())
        #expect(sent.timestamp == .max)
    }

    @Test(arguments: HostileMessages.all)
    func goesOutByteForByteAsItCameIn(_ message: HostileMessage) throws {
        if Librabbitmq.refusesDeepNesting, message.name.contains("150 levels") {
            // librabbitmq 0.14 and later refuse it themselves: the connection fails (see
            // ForwardingTests); nothing reaches the client to change.
            #expect(throws: Librabbitmq.Failure.self) { try republished(message.properties) }
            return
        }
        let (_, encoded) = try republished(message.properties)
        #expect(encoded == message.properties)
    }

    @Test func exactValuesAreReadable() throws {
        let (cafe, _) = try republished(HostileMessages.invalidUTF8.properties)
        #expect(cafe.contentType == "caf\u{FFFD}")
        #expect(cafe.bytes(of: .contentType) == Wire.latin1Cafe)
        #expect(cafe.headers?.first?.keyBytes == Wire.latin1Cafe)
        #expect(cafe.headers?["value"] == .invalidUTF8String(Wire.latin1Cafe))

        let (before1970, _) = try republished(HostileMessages.timestamps[2].properties)
        #expect(before1970.timestamp?.secondsSince1970 == -1000)
        #expect(before1970.headers?["sent"] == .timestamp(AMQPTimestamp(secondsSince1970: -1000)))

        let (types, _) = try republished(HostileMessages.everyType.properties)
        #expect(types.headers?["D"] == .decimal(scale: 2, value: -12345))
        #expect(types.headers?["L"] == .uint64(.max))
        #expect(types.deliveryMode == .persistent)
        #expect(types.priority == 255)

        let (duplicates, _) = try republished(HostileMessages.duplicateKeys.properties)
        #expect(duplicates.headers?.keys == ["tenant", "other", "tenant", "nested"])
        #expect(duplicates.headers?["tenant"] == "eu")
    }

    @Test func settingATextPropertyReplacesItsBytes() throws {
        var (properties, _) = try republished(HostileMessages.invalidUTF8.properties)
        properties.messageID = "order-1"
        #expect(properties.bytes(of: .messageID) == Array("order-1".utf8))
        properties.setBytes(Wire.latin1Cafe, of: .messageID)
        #expect(properties.messageID == "caf\u{FFFD}")
        properties.setBytes(nil, of: .messageID)
        #expect(properties.messageID == nil)
        properties.setBytes(Array(repeating: 0xE9, count: 256), of: .appID)
        #expect(throws: AMQPError.self) { try properties.validate(frameMax: 131_072) }
    }

    @Test func aDeliveryModeRabbitMQRefusesIsKeptButNotSent() throws {
        var odd = WireProperties()
        odd.deliveryMode = 3
        let (properties, encoded) = try republishedWithoutValidation(odd.encoded)
        #expect(encoded == odd.encoded)
        #expect(properties.deliveryMode == nil)
        #expect(properties.deliveryModeValue == 3)
        // RabbitMQ closes the channel over it (406 delivery_mode_unknown).
        let error = #expect(throws: AMQPError.self) { try properties.validate(frameMax: 131_072) }
        #expect(error?.code == .invalidArgument)
    }

    @Test func propertiesNestedBeyondTheLimitAreNotCopied() throws {
        if Librabbitmq.refusesDeepNesting {
            #expect(throws: Librabbitmq.Failure.self) {
                try Librabbitmq.withDecodedProperties(HostileMessages.tooDeep.properties) { _ in }
            }
            return
        }
        let error = #expect(throws: AMQPError.self) {
            try Librabbitmq.withDecodedProperties(HostileMessages.tooDeep.properties) { try BasicProperties(copying: $0) }
        }
        #expect(error?.code == .protocolError)
    }
}
