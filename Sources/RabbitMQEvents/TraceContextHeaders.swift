import RabbitMQ
import Tracing

/// Writes the trace context the application's tracer propagates (W3C `traceparent` and
/// `tracestate` with an OpenTelemetry tracer) into message headers.
struct TraceContextInjector: Injector {
    func inject(_ value: String, forKey key: String, into headers: inout FieldTable) {
        headers[key] = .string(value)
    }
}

/// Reads the trace context from message headers.
struct TraceContextExtractor: Extractor {
    func extract(key: String, from headers: FieldTable) -> String? {
        headers[key]?.stringValue
    }
}
