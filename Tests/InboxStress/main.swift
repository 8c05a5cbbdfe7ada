import Foundation
import GRDB
import RabbitMQEventsSQLite

// Run by the inbox test, several at once on one SQLite file: handles message ids 0..<count
// through the store's inbox, each handling inserting a row into `effects`, and prints how many
// it handled (the rest were duplicates another process handled first).
//
// Usage: RabbitMQInboxStress PATH WORKER COUNT
let arguments = CommandLine.arguments
guard arguments.count == 4, let count = Int(arguments[3]) else {
    FileHandle.standardError.write(Data("usage: RabbitMQInboxStress PATH WORKER COUNT\n".utf8))
    exit(2)
}
let worker = arguments[2]
let store = try SQLiteEventStore(path: arguments[1])
try store.database.write { db in
    try db.execute(sql: "CREATE TABLE IF NOT EXISTS effects (message_id TEXT NOT NULL, worker TEXT NOT NULL)")
}
var handled = 0
// Every worker starts from a different place, so they collide all along.
let offset = abs(worker.hashValue) % count
for index in 0..<count {
    let id = "m\((index + offset) % count)"
    let outcome = try await store.once(messageID: id, consumerGroup: "stress") { db in
        try db.execute(sql: "INSERT INTO effects (message_id, worker) VALUES (?, ?)", arguments: [id, worker])
    }
    if outcome.wasHandled { handled += 1 }
}
print("handled \(handled)")
