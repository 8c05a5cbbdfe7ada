import Testing

@testable import RabbitMQ

@Suite("Outstanding delivery tags")
struct OutstandingTagsTests {
    @Test func tagsComeAndGoInAnyOrder() {
        var tags = OutstandingTags()
        for tag in UInt64(1)...200 { tags.insert(tag) }
        #expect(tags.count == 200)
        let first = tags.remove(150)
        let second = tags.remove(150)
        #expect(first && !second, "a tag is acknowledged once")
        #expect(!tags.contains(150) && tags.contains(149) && tags.contains(151))
        var allRemoved = true
        for tag in UInt64(1)...149 { allRemoved = tags.remove(tag) && allRemoved }
        #expect(allRemoved)
        #expect(tags.count == 50)
        #expect(!tags.contains(0) && !tags.contains(201) && !tags.contains(100_000))
        for tag in UInt64(151)...200 { allRemoved = tags.remove(tag) && allRemoved }
        #expect(allRemoved)
        #expect(tags.isEmpty)
        // After emptying, a new window starts wherever the next tag is.
        tags.insert(1_000_000)
        #expect(tags.contains(1_000_000) && tags.count == 1)
    }

    @Test func removingUpToATagCoversExactlyTheTagsAtOrBelowIt() {
        var tags = OutstandingTags()
        for tag in UInt64(5)...300 where tag % 3 != 0 { tags.insert(tag) }
        let expected = (UInt64(5)...300).filter { $0 % 3 != 0 }
        #expect(tags.count == expected.count)
        tags.removeAll(upTo: 130)
        #expect(tags.count == expected.filter { $0 > 130 }.count)
        #expect(!tags.contains(130) && !tags.contains(5) && tags.contains(131) && tags.contains(299))
        tags.removeAll(upTo: 191)  // within a word
        #expect(!tags.contains(190) && tags.contains(193))
        tags.removeAll(upTo: UInt64.max)
        #expect(tags.isEmpty)
    }

    @Test func aTagBelowTheWindowWidensIt() {
        var tags = OutstandingTags()
        tags.insert(1_000)
        tags.insert(10)
        #expect(tags.contains(10) && tags.contains(1_000) && tags.count == 2)
        let removed = tags.remove(1_000) && tags.remove(10)
        #expect(removed && tags.isEmpty)
    }
}
