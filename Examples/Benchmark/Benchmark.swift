import Foundation
import RabbitMQ
import RabbitMQEvents

// rabbitmq-bench: the benchmark client of ../shared/bench/CONTRACT.md (W1 publish, W2 publish
// with confirms, W3 consume with acks, W4 latency, W5 typed JSON events end to end), using only
// the public API of RabbitMQ and RabbitMQEvents, plus W6 (this project's own): W5's events with
// partition keys through ordered lanes and the SQLite inbox, W7: W5's events through the SQLite
// outbox and its relay, and IDLE: CPU of an open connection with a consumer and no traffic.
// One JSON line on stdout; the rest on stderr.

struct Options {
    var workload = ""
    var count = 200_000
    var size = 128
    var url = "amqp://guest:guest@127.0.0.1:5672/%2f"
    var rate = 2000.0
    var prefetch: UInt16 = 500
    var window = 1000
    /// W7's outbox: empty for a SQLite file of its own, or a `postgres://` URL of a database the
    /// benchmark may write to (it empties its outbox table first).
    var database = ""
    /// The events' codec (W5-W7): `json` for the library's default, ``JSONEventCodec``, or
    /// `foundation` for ``FoundationJSONEventCodec`` (Foundation's JSONEncoder and JSONDecoder).
    var codec = "json"

    init(_ arguments: [String]) throws {
        var iterator = arguments.makeIterator()
        while let flag = iterator.next() {
            guard let value = iterator.next() else { throw BenchError("\(flag) needs a value") }
            switch flag {
            case "--workload": workload = value
            case "--count": count = try number(value, flag)
            case "--size": size = try number(value, flag)
            case "--url": url = value
            case "--rate": rate = Double(try number(value, flag) as Int)
            case "--prefetch": prefetch = UInt16(try number(value, flag) as Int)
            case "--window": window = try number(value, flag)
            case "--database": database = value
            case "--codec":
                guard ["json", "foundation"].contains(value) else { throw BenchError("--codec json or foundation") }
                codec = value
            default: throw BenchError("unknown option \(flag)")
            }
        }
        guard ["W1", "W2", "W3", "W4", "W5", "W6", "W7", "IDLE"].contains(workload) else {
            throw BenchError("--workload W1...W7 or IDLE")
        }
    }
}

extension Options {
    /// The codec `--codec` names.
    var eventCodec: any EventCodec {
        codec == "foundation" ? FoundationJSONEventCodec() : JSONEventCodec()
    }

    /// The contract runs without heartbeats.
    var connectionConfiguration: AMQPConnection.Configuration {
        get throws {
            var configuration = try AMQPConnection.Configuration(url: url)
            configuration.heartbeat = 0
            return configuration
        }
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func number<T: FixedWidthInteger>(_ text: String, _ flag: String) throws -> T {
    guard let value = T(text) else { throw BenchError("\(flag) takes a number, not \(text)") }
    return value
}

/// User plus system CPU of the whole process, in seconds.
func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1_000_000 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Resident memory of the process in KiB.
func residentKiB() -> Int {
    guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
        let pages = Int(statm.split(separator: " ")[1])
    else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE))) / 1024
}

/// Nanoseconds of the monotonic clock (the same clock in both connections of W4).
func monotonicNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

func log(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// Times a section: wall seconds and process CPU seconds.
struct Stopwatch {
    let start = ContinuousClock.now
    let cpuStart = cpuSeconds()
    var seconds: Double { (ContinuousClock.now - start).seconds }
    var cpu: Double { cpuSeconds() - cpuStart }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// Polls a passive declare about every millisecond until the queue holds `count` messages.
func waitForCount(_ count: Int, queue: String, channel: AMQPChannel) async throws -> UInt32 {
    while true {
        let seen = try await channel.queueDeclare(queue, passive: true).messageCount
        if seen >= count { return seen }
        try await Task.sleep(for: .milliseconds(1))
    }
}

@main
enum Benchmark {
    static func main() async {
        do {
            let options = try Options(Array(CommandLine.arguments.dropFirst()))
            let result = try await run(options)
            // Each value is already a JSON literal: a number, or a string with its quotes.
            let fields = result.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",")
            print("{\"client\":\"swift-rabbitmq\",\"workload\":\"\(options.workload)\",\"size\":\(options.size),\(fields)}")
        } catch {
            log("rabbitmq-bench: \(error)")
            exit(1)
        }
    }

    static func run(_ options: Options) async throws -> [String: String] {
        let connection = try await AMQPConnection.open(options.connectionConfiguration)
        let channel = try await connection.openChannel()
        let queue = "peerbench-swift-rabbitmq-\(options.workload)-\(getpid())"
        try await channel.queueDeclare(queue)
        let body = [UInt8](repeating: 0x42, count: options.size)
        // The contract's messages are transient, delivery mode 1.
        let transient = BasicProperties(deliveryMode: .transient)
        var result: [String: String] = [:]

        // The message loops run on the connection's own thread (AMQPConnection.taskExecutor),
        // the way the library's documentation recommends for light, non-blocking loops.
        switch options.workload {
        case "W1":
            let watch = Stopwatch()
            try await withTaskExecutorPreference(connection.taskExecutor) {
                for _ in 0..<options.count { try await channel.publish(body, routingKey: queue, properties: transient) }
            }
            let (seconds, cpu) = (watch.seconds, watch.cpu)
            let queued = try await waitForCount(options.count, queue: queue, channel: channel)
            result = ["messages": "\(options.count)", "seconds": "\(seconds)", "cpu_seconds": "\(cpu)",
                      "seconds_queued": "\(watch.seconds)", "queued": "\(queued)"]
        case "W2":
            try await channel.confirmSelect(window: options.window)
            let watch = Stopwatch()
            try await withTaskExecutorPreference(connection.taskExecutor) {
                var last: PublishConfirmation?
                for _ in 0..<options.count {
                    last = try await channel.publishWithoutWaiting(body, routingKey: queue, properties: transient)
                }
                try await last?.wait()
            }
            result = ["messages": "\(options.count)", "seconds": "\(watch.seconds)", "cpu_seconds": "\(watch.cpu)",
                      "confirm_mode": "\"window\""]
        case "W3":
            try await fill(queue, options: options, body: body, connection: connection)
            let watch = Stopwatch()
            let rssStart = residentKiB()
            try await channel.basicQos(prefetchCount: options.prefetch)
            let received = try await withTaskExecutorPreference(connection.taskExecutor) {
                var received = 0
                for try await delivery in try await channel.consume(queue: queue) {
                    try await delivery.ack()
                    received += 1
                    if received == options.count { break }
                }
                return received
            }
            result = ["messages": "\(received)", "seconds": "\(watch.seconds)", "cpu_seconds": "\(watch.cpu)",
                      "rss_start_kib": "\(rssStart)", "rss_end_kib": "\(residentKiB())"]
        case "W4":
            result = try await latency(queue, options: options, connection: connection)
        case "W5":
            result = try await events(queue, options: options, connection: connection, channel: channel)
        case "W6":
            result = try await orderedEvents(queue, options: options, connection: connection, channel: channel)
        case "IDLE":
            // A consumer waiting on an empty queue for --count milliseconds: what an open, idle
            // connection costs (its loop, timers and threads).
            try await channel.basicQos(prefetchCount: options.prefetch)
            let consumer = try await channel.consume(queue: queue)
            let watch = Stopwatch()
            // The wait is not a Task.sleep: what is measured is the connection, not a timer of
            // the benchmark's own. A plain thread sleeps instead.
            let idle = TimeInterval(options.count) / 1000
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                Thread {
                    Thread.sleep(forTimeInterval: idle)
                    done.resume()
                }.start()
            }
            let (seconds, cpu) = (watch.seconds, watch.cpu)
            try await consumer.cancel()
            result = ["messages": "0", "seconds": "\(seconds)", "cpu_seconds": "\(cpu)",
                      "cpu_us_per_second": "\(cpu / seconds * 1e6)"]
        default:
            result = try await outbox(queue, options: options, channel: channel)
        }
        try await channel.queueDelete(queue)
        await connection.close()
        return result
    }

    /// Fills the queue (not timed) and waits until the broker reports every message.
    static func fill(_ queue: String, options: Options, body: [UInt8], connection: AMQPConnection) async throws {
        let filler = try await connection.openChannel()
        try await filler.confirmSelect(window: 5000)
        var last: PublishConfirmation?
        let transient = BasicProperties(deliveryMode: .transient)
        for _ in 0..<options.count {
            last = try await filler.publishWithoutWaiting(body, routingKey: queue, properties: transient)
        }
        try await last?.wait()
        _ = try await waitForCount(options.count, queue: queue, channel: filler)
        await filler.close()
    }

    static func latency(_ queue: String, options: Options, connection: AMQPConnection) async throws -> [String: String] {
        let consumerConnection = try await AMQPConnection.open(options.connectionConfiguration)
        let consumerChannel = try await consumerConnection.openChannel()
        let consumer = try await consumerChannel.consume(queue: queue, autoAck: true)
        let publisher = try await connection.openChannel()
        let count = options.count
        let receiving = Task(executorPreference: consumerConnection.taskExecutor) { () -> ([UInt64], ContinuousClock.Instant) in
            var samples: [UInt64] = []
            samples.reserveCapacity(count)
            for try await delivery in consumer {
                let now = monotonicNanoseconds()
                let sent = delivery.body.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
                samples.append(now &- sent)
                if samples.count == count { break }
            }
            return (samples, ContinuousClock.now)
        }
        let start = ContinuousClock.now
        let watch = Stopwatch()
        // Message i is due at start + i / rate. The publisher sleeps on its connection's own
        // thread (AMQPConnection.sleep), whose event loop waits until the next message is due,
        // as the C client's poll timeout does: one wake-up per message.
        let rate = options.rate
        try await withTaskExecutorPreference(connection.taskExecutor) {
            var body = [UInt8](repeating: 0, count: max(options.size, 8))
            for index in 0..<count {
                try await connection.sleep(until: start + .nanoseconds(Int64(Double(index) / rate * 1e9)))
                let now = monotonicNanoseconds()
                for byte in 0..<8 { body[byte] = UInt8(truncatingIfNeeded: now >> (8 * UInt64(byte))) }
                try await publisher.publish(body, routingKey: queue, properties: .init(deliveryMode: .transient))
            }
        }
        let (samples, end) = try await receiving.value
        let cpu = watch.cpu
        await consumerConnection.close()
        let sorted = samples.sorted()
        let micro = { (index: Int) in sorted[min(index, sorted.count - 1)] / 1000 }
        return ["messages": "\(samples.count)", "seconds": "\((end - start).seconds)",
                "cpu_seconds": "\(cpu)", "p50_us": "\(micro(sorted.count / 2))", "p99_us": "\(micro(sorted.count * 99 / 100))",
                "max_us": "\(sorted.last.map { $0 / 1000 } ?? 0)", "rate": "\(Int(options.rate))"]
    }
}
