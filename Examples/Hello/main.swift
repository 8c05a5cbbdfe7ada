import Foundation
import Logging
import RabbitMQ

// A first program: connect, declare a queue, and show what the broker says.
let url = ProcessInfo.processInfo.environment["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/%2f"
let connection = try await AMQPConnection.open(url: url, connectionName: "rabbitmq-hello")
print("connected to RabbitMQ \(connection.serverProperties["version"]?.stringValue ?? "?"), \(connection.negotiated)")
let channel = try await connection.openChannel()
let queue = try await channel.queueDeclare("", exclusive: true)
print("declared \(queue.name)")
await connection.close()
