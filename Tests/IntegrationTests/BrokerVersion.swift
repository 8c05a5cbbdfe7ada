@testable import RabbitMQ

/// What differs between the RabbitMQ versions the tests run against (3.10 and 4.0), so that a
/// test asserts each version's own behaviour.
enum BrokerVersion {
    /// Whether the broker behind `connection` is RabbitMQ 4 or later.
    static func isRabbitMQ4(_ connection: AMQPConnection) -> Bool {
        let version = connection.serverProperties["version"]?.stringValue ?? ""
        return (Int(version.prefix { $0.isNumber }) ?? 0) >= 4
    }

    /// The headers a message published with `headers` arrives with. RabbitMQ 3 passes them
    /// through untouched; RabbitMQ 4 re-encodes them: the first entry of each key, ordered by
    /// key, an `L` at the top written as an `l` with the same bits.
    static func headersAsDelivered(_ headers: FieldTable?, by connection: AMQPConnection) -> FieldTable? {
        guard let headers, isRabbitMQ4(connection) else { return headers }
        return FieldTable(signingUnsigned64(headers.asReencodedByRabbitMQ4))
    }

    /// `entries` with each `L` value written as an `l` with the same bits, as RabbitMQ does
    /// whenever it re-encodes headers (3.10 on quorum queues and dead-lettering, 4 always).
    static func signingUnsigned64(_ entries: [FieldTable.Entry]) -> [FieldTable.Entry] {
        entries.map { entry in
            guard case .uint64(let value) = entry.value else { return entry }
            var signed = entry
            signed.value = .int64(Int64(bitPattern: value))
            return signed
        }
    }

    /// `properties` as a message published with them arrives (see ``headersAsDelivered(_:by:)``).
    static func propertiesAsDelivered(_ properties: BasicProperties, by connection: AMQPConnection) -> BasicProperties {
        var delivered = properties
        delivered.headers = headersAsDelivered(properties.headers, by: connection)
        return delivered
    }

    /// RabbitMQ 4 refuses messages over 16 MiB by default (`max_message_size`); 3.10 takes 128 MiB.
    static func largestMessage(_ connection: AMQPConnection) -> Int {
        isRabbitMQ4(connection) ? 16 << 20 : 128 << 20
    }
}
