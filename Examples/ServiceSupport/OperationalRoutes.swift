import Foundation
import Hummingbird
import Metrics
import Prometheus
import RabbitMQEvents

/// Makes swift-metrics report to a Prometheus registry (once per process) and returns it: the
/// library's figures (`rabbitmq_*`) and the service's own then show on `/metrics`.
public func bootstrapPrometheus() -> PrometheusCollectorRegistry {
    let registry = PrometheusCollectorRegistry()
    MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
    return registry
}

/// One health check: a name and whether it passes.
public typealias HealthChecks = @Sendable () async -> [String: Bool]

extension Router where Context == BasicRequestContext {
    /// Adds `GET /health` (200 when every check passes, 503 otherwise, with each check's result
    /// as JSON: `{"status": "UP", "checks": {"database": true, "broker": true}}`) and
    /// `GET /metrics` (the registry in Prometheus' text format).
    public func addOperationalRoutes(registry: PrometheusCollectorRegistry, checks: @escaping HealthChecks) {
        get("health") { _, _ -> Response in
            let results = await checks()
            let healthy = results.values.allSatisfy { $0 }
            let body = HealthReport(status: healthy ? "UP" : "DOWN", checks: results)
            return jsonResponse(healthy ? .ok : .serviceUnavailable, body)
        }
        get("metrics") { _, _ -> Response in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
    }
}

/// What `/health` answers.
struct HealthReport: Encodable {
    var status: String
    var checks: [String: Bool]
}

/// A response with `value` as its JSON body.
public func jsonResponse(_ status: HTTPResponse.Status, _ value: some Encodable) -> Response {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
    return Response(
        status: status, headers: [.contentType: "application/json"],
        body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
}

/// A JSON error body: `{"error": "..."}`.
public struct ErrorBody: Encodable, Sendable {
    /// What went wrong, for people.
    public var error: String

    /// An error body saying `error`.
    public init(_ error: String) {
        self.error = error
    }
}

/// The line a service prints for an event its inbox had handled before: whether the broker
/// delivered it again (a consumer died before acknowledging) or a relay published it again (it
/// died between the confirm and deleting the event from its outbox).
public func duplicateLine(_ context: EventContext) -> String {
    "duplicate \(context.messageID ?? "") skipped ("
        + (context.redelivered ? "redelivered by the broker" : "published again") + ")"
}
