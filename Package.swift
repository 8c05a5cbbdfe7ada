// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "swift-rabbitmq",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "RabbitMQ", targets: ["RabbitMQ"]),
        .executable(name: "rabbitmq-hello", targets: ["Hello"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
    ],
    targets: [
        // librabbitmq (rabbitmq-c) as a system library. The module's header selects the
        // 0.12+ layout (<rabbitmq-c/amqp.h>) or the flat 0.11 one (<amqp.h>) and wraps the
        // C-variadic login functions that Swift cannot call.
        .systemLibrary(
            name: "CRabbitMQ",
            pkgConfig: "librabbitmq",
            providers: [.apt(["librabbitmq-dev"]), .brew(["rabbitmq-c"])]
        ),
        .target(
            name: "RabbitMQ",
            dependencies: [
                "CRabbitMQ",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
        .executableTarget(
            name: "Hello",
            dependencies: ["RabbitMQ", .product(name: "Logging", package: "swift-log")],
            path: "Examples/Hello"
        ),
        // Run by the memory test in a process of its own.
        .executableTarget(name: "RabbitMQSoak", dependencies: ["RabbitMQ"], path: "Tests/Soak"),
        .testTarget(name: "RabbitMQTests", dependencies: ["RabbitMQ"]),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["RabbitMQ", .product(name: "Logging", package: "swift-log")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
