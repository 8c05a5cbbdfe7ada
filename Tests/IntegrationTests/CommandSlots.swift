/// Bounds how many commands of one kind the tests run at once; callers beyond the bound wait
/// their turn, first come first served.
actor CommandSlots {
    private let width: Int
    private var running = 0
    private var waiting: [CheckedContinuation<Void, Never>] = []

    init(_ width: Int) { self.width = width }

    /// Runs `body` once fewer than `width` others are running.
    @discardableResult
    func run<Result: Sendable>(_ body: @Sendable () async throws -> Result) async throws -> Result {
        if running < width {
            running += 1
        } else {
            // The slot is handed over by the finishing caller: `running` stays counted.
            await withCheckedContinuation { waiting.append($0) }
        }
        defer { release() }
        return try await body()
    }

    private func release() {
        if waiting.isEmpty {
            running -= 1
        } else {
            waiting.removeFirst().resume()
        }
    }
}
