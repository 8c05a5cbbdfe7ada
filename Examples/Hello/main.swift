import Foundation
import Logging
import RabbitMQ

// A first program: connect, publish a message to a queue, fetch it back, close.
let url = ProcessInfo.processInfo.environment["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/%2f"
let connection = try await AMQPConnection.open(url: url, connectionName: "rabbitmq-hello")
let version = connection.serverProperties["version"]?.stringValue ?? "?"
print("connected to RabbitMQ \(version) (heartbeat \(connection.negotiated.heartbeat) s)")

try await connection.withChannel { channel in
    let queue = try await channel.queueDeclare("", exclusive: true).name
    try await channel.publish(
        "hello from swift-rabbitmq", routingKey: queue,
        properties: .init(contentType: "text/plain", messageID: UUID().uuidString, timestamp: .now))
    print("published to \(queue)")
    guard let message = try await channel.basicGet(queue: queue, autoAck: true) else {
        throw AMQPError(.notFound, "the message did not arrive")
    }
    print("received \"\(message.bodyString)\" (\(message.properties.contentType ?? "-"), id \(message.properties.messageID ?? "-"))")
}
await connection.close()
print("closed")
