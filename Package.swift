// swift-tools-version:6.2
import PackageDescription

/// What the two example services (the inventory daemon and the order service) build on: the
/// event layer with both stores, HTTP for health and metrics, and service lifecycle.
let exampleServiceDependencies: [Target.Dependency] = [
    "OrderEvents", "RabbitMQEvents", "RabbitMQEventsSQLite", "RabbitMQEventsPostgres", "RabbitMQ",
    "ServiceSupport",
    .product(name: "GRDB", package: "GRDB.swift"),
    .product(name: "PostgresNIO", package: "postgres-nio"),
    .product(name: "ArgumentParser", package: "swift-argument-parser"),
    .product(name: "Logging", package: "swift-log"),
    .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
    .product(name: "Hummingbird", package: "hummingbird"),
    .product(name: "Prometheus", package: "swift-prometheus"),
]

let package = Package(
    name: "swift-rabbitmq",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "RabbitMQ", targets: ["RabbitMQ"]),
        .library(name: "RabbitMQEvents", targets: ["RabbitMQEvents"]),
        .library(name: "RabbitMQEventsSQLite", targets: ["RabbitMQEventsSQLite"]),
        .library(name: "RabbitMQEventsPostgres", targets: ["RabbitMQEventsPostgres"]),
        .executable(name: "rabbitmq-events", targets: ["RabbitMQEventsTool"]),
        .executable(name: "rabbitmq-hello", targets: ["Hello"]),
        .executable(name: "order-publisher", targets: ["OrderPublisher"]),
        .executable(name: "inventory-daemon", targets: ["InventoryDaemon"]),
        .executable(name: "order-service", targets: ["OrderService"]),
        .executable(name: "rabbitmq-bench", targets: ["Benchmark"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.7.0"),
        // The SQLite stores (RabbitMQEventsSQLite).
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        // The PostgreSQL stores (RabbitMQEventsPostgres).
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.0"),
        // The example services' HTTP endpoints and Prometheus metrics.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.0"),
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
        // The event stores on SQLite, in a product of their own so the core stays light.
        .target(
            name: "RabbitMQEventsSQLite",
            dependencies: ["RabbitMQEvents", "RabbitMQ", .product(name: "GRDB", package: "GRDB.swift")]
        ),

        // The event stores on PostgreSQL, for services with replicas on several machines.
        .target(
            name: "RabbitMQEventsPostgres",
            dependencies: [
                "RabbitMQEvents", "RabbitMQ", .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // `rabbitmq-events`: dead letters listed and sent back from the command line.
        .executableTarget(
            name: "RabbitMQEventsTool",
            dependencies: [
                "RabbitMQEvents", "RabbitMQ", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // Examples: the order events both programs share, then the programs.
        .target(name: "OrderEvents", dependencies: ["RabbitMQEvents"], path: "Examples/OrderEvents"),
        // What both services serve besides their work: /health and /metrics (Prometheus).
        .target(
            name: "ServiceSupport",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                "RabbitMQEvents",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            path: "Examples/ServiceSupport"
        ),
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
            dependencies: exampleServiceDependencies,
            path: "Examples/InventoryDaemon"
        ),
        .executableTarget(
            name: "OrderService",
            dependencies: exampleServiceDependencies,
            path: "Examples/OrderService"
        ),

        .executableTarget(
            name: "Benchmark",
            dependencies: [
                "RabbitMQ", "RabbitMQEvents", "RabbitMQEventsSQLite", "RabbitMQEventsPostgres",
                .product(name: "PostgresNIO", package: "postgres-nio"), .product(name: "Logging", package: "swift-log"),
            ],
            path: "Examples/Benchmark"),

        // Run by the memory test in a process of its own.
        .executableTarget(name: "RabbitMQSoak", dependencies: ["RabbitMQ"], path: "Tests/Soak"),
        // Run by the inbox test, several processes on one SQLite file.
        .executableTarget(
            name: "RabbitMQInboxStress",
            dependencies: ["RabbitMQEventsSQLite", .product(name: "GRDB", package: "GRDB.swift")],
            path: "Tests/InboxStress"
        ),
        // Hand-encoded wire bytes and the messages other clients send that need care.
        .target(name: "WireFixtures", dependencies: ["CRabbitMQ"], path: "Tests/WireFixtures"),
        .testTarget(name: "RabbitMQTests", dependencies: ["RabbitMQ", "WireFixtures"]),
        .testTarget(name: "RabbitMQEventsTests", dependencies: ["RabbitMQEvents", "OrderEvents"]),
        .testTarget(
            name: "RabbitMQEventsSQLiteTests",
            dependencies: ["RabbitMQEventsSQLite", "RabbitMQEvents", .product(name: "GRDB", package: "GRDB.swift")]
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "RabbitMQ", "RabbitMQEvents", "RabbitMQEventsSQLite", "RabbitMQEventsPostgres", "OrderEvents", "WireFixtures",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
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
