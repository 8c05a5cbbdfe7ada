import Logging
import RabbitMQ
import ServiceLifecycle

extension AMQPConnection {
    /// Opens a connection for a service, giving up when a graceful shutdown begins while it is
    /// still being tried (with `firstConnectionRetry`, a broker that is down would otherwise hold
    /// SIGTERM for as long): `nil` then.
    static func openUnlessShuttingDown(_ configuration: Configuration, logger: Logger) async throws -> AMQPConnection? {
        do {
            return try await cancelWhenGracefulShutdown {
                try await AMQPConnection.open(configuration, logger: logger)
            }
        } catch where Task.isShuttingDownGracefully {
            return nil
        }
    }
}
