import Foundation
import RabbitMQ
import Testing

/// Resident memory over a long run, measured in a process of its own (`RabbitMQSoak`), where
/// no other test allocates.
@Suite(
    "Memory over a million messages",
    .enabled(if: TestBroker.reachableOrRequired, "needs a broker; CI and AMQP_REQUIRE_BROKER=1 make it fail instead"), .watchdog)
struct MemoryTests {
    struct SoakResult: Decodable {
        let consumed: Int
        let seconds: Double
        let rss_samples: [Int]
    }

    /// The soak executable, built beside this test bundle by `swift test`.
    private var soakExecutable: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("RabbitMQSoak").path
    }

    @Test func residentMemoryStaysFlatOverAMillionConsumedAndAckedMessages() async throws {
        let output = try await TestBroker.shell("AMQP_URL='\(TestBroker.url)' '\(soakExecutable)'", ["1000000"])
        let line = try #require(output.split(separator: "\n").last { $0.hasPrefix("{") })
        let result = try JSONDecoder().decode(SoakResult.self, from: Data(line.utf8))
        #expect(result.consumed == 1_000_000)
        #expect(result.rss_samples.count == 10)
        // After warm-up (the first 200,000), memory must not grow with the message count.
        let warm = result.rss_samples[1]
        let last = try #require(result.rss_samples.last)
        let growth = last - warm
        print("soak: \(result.consumed) messages in \(result.seconds) s; RSS \(warm / 1024) KiB after 200k, \(last / 1024) KiB at 1M (growth \(growth / 1024) KiB)")
        #expect(growth < 8 << 20, "RSS grew by \(growth / 1024) KiB: \(result.rss_samples)")
    }
}
