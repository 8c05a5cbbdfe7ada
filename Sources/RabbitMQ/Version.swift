/// This package's version, sent to the broker in the client properties.
let swiftRabbitMQVersion = "0.1.0"
