import ArgumentParser
import Foundation
import RabbitMQ
import RabbitMQEvents

/// `rabbitmq-events`: operations on the event layer's queues from the command line.
@main
struct RabbitMQEventsTool: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rabbitmq-events", abstract: "Operate the queues of RabbitMQEvents dispatchers.",
        subcommands: [DeadLettersCommand.self])
}

/// The options every subcommand shares.
struct ConnectionOptions: ParsableArguments {
    @Option(help: "AMQP URI (default: $AMQP_URL, then amqp://guest:guest@127.0.0.1:5672/%2f).")
    var url: String?

    func connect() async throws -> AMQPConnection {
        let url = url ?? ProcessInfo.processInfo.environment["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/%2f"
        var configuration = try AMQPConnection.Configuration(url: url)
        configuration.connectionName = "rabbitmq-events"
        return try await AMQPConnection.open(configuration)
    }
}

/// Which dispatcher's dead letters.
struct DeadLetterQueueOption: ParsableArguments {
    @Option(help: "The dispatcher's queue (its dead letters are in <queue>.dead-letter).")
    var queue: String
}

struct DeadLettersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dead-letters", abstract: "List dead letters, or send them back to their original exchange.",
        subcommands: [List.self, Redrive.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the dead letters of a dispatcher's queue (they stay where they are).")

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var target: DeadLetterQueueOption

        @Option(help: "Most letters to list.")
        var limit = 100

        func run() async throws {
            let connection = try await connection.connect()
            let letters = try await DeadLetters(connection: connection, queue: target.queue).list(limit: limit)
            await connection.close()
            print("message-id\ttype\treason\tattempts\toriginal route\terror")
            for letter in letters {
                let route = "\(letter.originalExchange ?? "?") \(letter.originalRoutingKey ?? "?")"
                let error = (letter.error ?? "").replacingOccurrences(of: "\n", with: " ")
                print(
                    "\(letter.messageID ?? "-")\t\(letter.eventType ?? "-")\t\(letter.reason ?? "-")\t"
                        + "\(letter.attempts.map(String.init) ?? "-")\t\(route)\t\(error)")
            }
            print("\(letters.count) dead letter\(letters.count == 1 ? "" : "s") in \(target.queue).dead-letter")
        }
    }

    struct Redrive: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send dead letters back to their original exchange, each confirmed before it leaves.")

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var target: DeadLetterQueueOption

        @Option(help: "Most letters to send back (default: all).")
        var limit: Int?

        @Option(help: "Only the letter with this message id (repeatable).")
        var messageID: [String] = []

        func run() async throws {
            let connection = try await connection.connect()
            let wanted = Set(messageID)
            do {
                let sent = try await DeadLetters(connection: connection, queue: target.queue).redrive(limit: limit ?? .max) {
                    wanted.isEmpty || $0.messageID.map(wanted.contains) == true
                }
                await connection.close()
                print("sent back \(sent) dead letter\(sent == 1 ? "" : "s")")
            } catch {
                await connection.close()
                throw error
            }
        }
    }
}
