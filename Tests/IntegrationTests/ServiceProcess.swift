import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// One of the example programs (`order-service`, `inventory-daemon`) run by a test, with the
/// HTTP address it printed.
struct ServiceProcess {
    let name: String
    let process: ChildProcess
    /// `http://127.0.0.1:PORT`, once it listens.
    let baseURL: String

    /// The built program `name` (beside the test bundle).
    static func executable(_ name: String) -> String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name).path
    }

    /// Starts `name` with `arguments` and waits (up to a minute) until its output has a line
    /// starting with `listeningPrefix` followed by its URL.
    static func start(
        _ name: String, _ arguments: [String], listeningPrefix: String, url: String = TestBroker.url
    ) async throws -> ServiceProcess {
        let process = try ChildProcess.start(executable(name), arguments, environment: ["AMQP_URL": url])
        // A whole line that starts with the prefix: Hummingbird's own log line ("Server started
        // and listening on ...") comes first and contains the words too.
        func listeningLine() -> Substring? {
            let output = process.output
            return output.split(separator: "\n").first { $0.hasPrefix(listeningPrefix) && output.contains($0 + "\n") }
        }
        let deadline = ContinuousClock.now + .seconds(60)
        while listeningLine() == nil, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        guard let line = listeningLine() else {
            process.signal(SIGKILL)
            _ = await process.waitForExit()
            throw TestBroker.CtlError(message: "\(name) did not listen within a minute: \(process.output.suffix(3000))")
        }
        let baseURL = String(line.dropFirst(listeningPrefix.count)).trimmingCharacters(in: .whitespaces)
        return ServiceProcess(name: name, process: process, baseURL: baseURL)
    }

    /// Waits (up to a minute) until `/health` answers 200: the program is connected and consuming.
    func waitUntilHealthy() async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if (try? await HTTP.get(baseURL + "/health").status) == 200 { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return false
    }
}

/// A small HTTP client for the tests (URLSession; errors for a refused or reset connection).
enum HTTP {
    struct Reply {
        let status: Int
        let body: Data
        var text: String { String(decoding: body, as: UTF8.self) }
        /// The body as a JSON object.
        var json: [String: Any] { ((try? JSONSerialization.jsonObject(with: body)) as? [String: Any]) ?? [:] }
    }

    static let session: URLSession = {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = 30
        return URLSession(configuration: configuration)
    }()

    static func get(_ url: String) async throws -> Reply {
        try await send("GET", url, body: nil)
    }

    static func post(_ url: String, _ body: String = "") async throws -> Reply {
        try await send("POST", url, body: Data(body.utf8))
    }

    private static func send(_ method: String, _ url: String, body: Data?) async throws -> Reply {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method
        request.httpBody = body
        if body != nil { request.setValue("application/json", forHTTPHeaderField: "content-type") }
        let (data, response) = try await session.data(for: request)
        return Reply(status: (response as? HTTPURLResponse)?.statusCode ?? 0, body: data)
    }
}
