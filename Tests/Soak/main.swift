import Foundation
import RabbitMQ

// rabbitmq-soak COUNT: publishes COUNT messages with confirms into a fresh queue while a
// consumer on a second connection receives and acknowledges each one, and prints the process's
// resident memory (RSS) as it goes: one JSON line at the end, with a sample every tenth.
// The memory test runs it in a process of its own so no other test disturbs the figure.

func residentBytes() -> Int {
    guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
        let pages = Int(statm.split(separator: " ")[1])
    else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

let count = Int(CommandLine.arguments.dropFirst().first ?? "") ?? 1_000_000
let url = ProcessInfo.processInfo.environment["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/%2f"
let publisherConnection = try await AMQPConnection.open(url: url, connectionName: "soak-publisher")
let consumerConnection = try await AMQPConnection.open(url: url, connectionName: "soak-consumer")
let publisher = try await publisherConnection.openChannel()
let consumerChannel = try await consumerConnection.openChannel()
let queue = try await publisher.queueDeclare("soak-\(getpid())", durable: true).name
try await publisher.confirmSelect(window: 1000)
try await consumerChannel.basicQos(prefetchCount: 500)
let consumer = try await consumerChannel.consume(queue: queue)
let started = ContinuousClock.now

let publishing = Task {
    let body = [UInt8](repeating: 0x5A, count: 128)
    var last: PublishConfirmation?
    for _ in 0..<count {
        last = try await publisher.publishWithoutWaiting(body, routingKey: queue)
    }
    try await last?.wait()
}

var samples: [Int] = []
var consumed = 0
for try await delivery in consumer {
    try await delivery.ack()
    consumed += 1
    if consumed % max(count / 10, 1) == 0 { samples.append(residentBytes()) }
    if consumed == count { break }
}
try await publishing.value
let seconds = Double((ContinuousClock.now - started).components.seconds)
try await publisher.queueDelete(queue)
await publisherConnection.close()
await consumerConnection.close()
print(#"{"consumed":\#(consumed),"seconds":\#(seconds),"rss_samples":[\#(samples.map(String.init).joined(separator: ","))]}"#)
