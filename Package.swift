// swift-tools-version:6.2
import PackageDescription

let package = Package(
    name: "swift-rabbitmq",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "RabbitMQ", targets: ["RabbitMQ"]),
        .library(name: "RabbitMQEvents", targets: ["RabbitMQEvents"]),
        .executable(name: "rabbitmq-hello", targets: ["Hello"]),
        .executable(name: "order-publisher", targets: ["OrderPublisher"]),
        .executable(name: "inventory-daemon", targets: ["InventoryDaemon"]),
        .executable(name: "rabbitmq-bench", targets: ["Benchmark"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.7.0"),
        // `swift package generate-documentation` for the DocC catalogs.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
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
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
        .target(
            name: "RabbitMQEvents",
            dependencies: [
                "RabbitMQ",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ]
        ),

        // Examples: the order events both programs share, then the programs.
        .target(name: "OrderEvents", dependencies: ["RabbitMQEvents"], path: "Examples/OrderEvents"),
        .executableTarget(
            name: "Hello",
            dependencies: ["RabbitMQ", .product(name: "Logging", package: "swift-log")],
            path: "Examples/Hello"
        ),
        .executableTarget(
            name: "OrderPublisher",
            dependencies: [
                "OrderEvents", "RabbitMQEvents", "RabbitMQ",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Examples/OrderPublisher"
        ),
        .executableTarget(
            name: "InventoryDaemon",
            dependencies: [
                "OrderEvents", "RabbitMQEvents", "RabbitMQ",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Examples/InventoryDaemon"
        ),

        .executableTarget(
            name: "Benchmark", dependencies: ["RabbitMQ", "RabbitMQEvents"], path: "Examples/Benchmark"),

        // Run by the memory test in a process of its own.
        .executableTarget(name: "RabbitMQSoak", dependencies: ["RabbitMQ"], path: "Tests/Soak"),
        // Hand-encoded wire bytes and the messages other clients send that need care.
        .target(name: "WireFixtures", dependencies: ["CRabbitMQ"], path: "Tests/WireFixtures"),
        .testTarget(name: "RabbitMQTests", dependencies: ["RabbitMQ", "WireFixtures"]),
        .testTarget(name: "RabbitMQEventsTests", dependencies: ["RabbitMQEvents", "OrderEvents"]),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "RabbitMQ", "RabbitMQEvents", "OrderEvents", "WireFixtures",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
