internal import CRabbitMQ
import Testing
import WireFixtures

@testable import RabbitMQ

/// `BasicProperties` keeps its fields in shared storage, copied on the first change, and a
/// channel reuses the properties of its last content header for a header with the same bytes:
/// neither may be visible as anything but a plain value.
@Suite("Properties storage")
struct PropertiesStorageTests {
    @Test func aChangedCopyLeavesTheOriginalAlone() {
        let original = BasicProperties(contentType: "application/json", headers: ["tenant": "eu"], priority: 3)
        var copy = original
        copy.contentType = "text/plain"
        copy.headers?["tenant"] = "us"
        copy.priority = nil
        copy.setBytes([0xE9], of: .appID)

        #expect(original.contentType == "application/json")
        #expect(original.headers?["tenant"] == "eu")
        #expect(original.priority == 3)
        #expect(original.appID == nil)
        #expect(copy.contentType == "text/plain")
        #expect(copy.headers?["tenant"] == "us")
        #expect(copy.priority == nil)
        #expect(copy.bytes(of: .appID) == [0xE9])
        #expect(copy != original)
    }

    @Test func valuesWithEqualFieldsAreEqualWhateverTheirStorage() {
        var built = BasicProperties()
        built.contentType = "application/json"
        built.deliveryMode = .persistent
        let direct = BasicProperties(contentType: "application/json", deliveryMode: .persistent)
        #expect(built == direct)
        #expect(built.hashValue == direct.hashValue)
        #expect(Set([built, direct]).count == 1)
    }

    @Test func changingAnEmptyValueLeavesOtherEmptyValuesEmpty() {
        // Every empty value shares one storage: the first change must copy it.
        var changed = BasicProperties()
        changed.priority = 9
        changed.headers = ["a": 1]
        #expect(BasicProperties() == BasicProperties(contentType: nil))
        #expect(BasicProperties().priority == nil)
        #expect(BasicProperties().headers == nil)
        #expect(changed.priority == 9)
        #expect(changed != BasicProperties())
    }

    @Test func receivedPropertiesWithoutFlagsAreEmpty() throws {
        let received = try BasicProperties(copying: amqp_basic_properties_t())
        #expect(received == BasicProperties())
    }

    /// The kept value is chosen by the header's bytes alone: the test hands over bytes with
    /// decoded properties that do not match them, which shows whether they were decoded.
    @Test func theSameBytesReuseTheKeptProperties() throws {
        var recent = RecentProperties()
        let (first, second) = (decoded(priority: 1), decoded(priority: 2))
        let bytes: [UInt8] = [0x08, 0x00, 0x01]  // priority flag, priority 1

        try withBytes(bytes) { encoded in
            let result1 = try recent.properties(encoded: encoded, decoded: first)
            #expect(result1.priority == 1)
            let result2 = try recent.properties(encoded: encoded, decoded: second)
            #expect(result2.priority == 1)
        }
        try withBytes([0x08, 0x00, 0x02]) { encoded in
            let result3 = try recent.properties(encoded: encoded, decoded: second)
            #expect(result3.priority == 2)
        }
        try withBytes([]) { encoded in
            let result4 = try recent.properties(encoded: encoded, decoded: amqp_basic_properties_t())
            #expect(result4 == BasicProperties())
            let result5 = try recent.properties(encoded: encoded, decoded: first)
            #expect(result5 == BasicProperties())
        }
    }

    @Test func largePropertiesAreDecodedEveryTime() throws {
        var recent = RecentProperties()
        let (first, second) = (decoded(priority: 1), decoded(priority: 2))
        let large = [UInt8](repeating: 7, count: RecentProperties.largestKept + 1)
        try withBytes(large) { encoded in
            let result6 = try recent.properties(encoded: encoded, decoded: first)
            #expect(result6.priority == 1)
            let result7 = try recent.properties(encoded: encoded, decoded: second)
            #expect(result7.priority == 2)
        }
    }

    @Test func realHeadersDecodeAsWithoutTheCache() throws {
        var recent = RecentProperties()
        for message in [HostileMessages.everyType, HostileMessages.invalidUTF8, HostileMessages.everyType] {
            try Librabbitmq.withDecodedProperties(message.properties) { decoded in
                let direct = try BasicProperties(copying: decoded)
                try withBytes(message.properties) { encoded in
                    let result8 = try recent.properties(encoded: encoded, decoded: decoded)
                    #expect(result8 == direct)
                    let result9 = try recent.properties(encoded: encoded, decoded: decoded)
                    #expect(result9 == direct)
                }
            }
        }
    }

    @Test func unreadablePropertiesThrowEveryTimeAndAreNotKept() throws {
        if Librabbitmq.refusesDeepNesting {
            // librabbitmq 0.14 and later refuse them before the client sees them.
            #expect(throws: Librabbitmq.Failure.self) {
                try Librabbitmq.withDecodedProperties(HostileMessages.tooDeep.properties) { _ in }
            }
            return
        }
        var recent = RecentProperties()
        let tooDeep = HostileMessages.tooDeep.properties
        try Librabbitmq.withDecodedProperties(tooDeep) { decoded in
            try withBytes(tooDeep) { encoded in
                for _ in 0..<2 {
                    let error = #expect(throws: AMQPError.self) {
                        try recent.properties(encoded: encoded, decoded: decoded)
                    }
                    #expect(error?.code == .protocolError)
                }
            }
        }
    }

    /// Decoded properties with only a priority, as librabbitmq hands them over.
    private func decoded(priority: UInt8) -> amqp_basic_properties_t {
        var properties = amqp_basic_properties_t()
        properties._flags = UInt32(AMQP_BASIC_PRIORITY_FLAG)
        properties.priority = priority
        return properties
    }

    private func withBytes(_ bytes: [UInt8], _ body: (amqp_bytes_t) throws -> Void) throws {
        var bytes = bytes
        try bytes.withUnsafeMutableBytes { try body(amqp_bytes_t(len: $0.count, bytes: $0.baseAddress)) }
    }
}
