import DequeModule

/// Publisher confirms on one channel: the publishes the broker has not confirmed yet, in
/// sequence order. (The window that bounds them is kept in ``ChannelStatus``, where publishers
/// check it without a hop to the connection thread.)
final class ConfirmTracker {
    struct Unconfirmed {
        let sequence: UInt64
        let confirmation: PublishConfirmation
        /// The publish itself, kept to send again after a recovery (``keepsPublishes``).
        let publish: PublishCommand?
        /// For a mandatory publish: what a `basic.return` of it would say.
        let returnKey: ReturnKey?
        /// Set when the broker returned it; its confirm then fails with this.
        var returned: AMQPError?
    }

    /// `basic.return` carries no sequence number. A returned mandatory message is matched to
    /// the oldest unconfirmed mandatory publish with the same exchange, routing key, body size,
    /// message id and headers (a headers exchange routes by them), preferring one whose headers
    /// match as they come back from the broker (integer widths and timestamp fractions may
    /// change on the way), else the oldest with the other four alike: publishes alike in all of
    /// them route alike unless bindings change between.
    struct ReturnKey {
        let exchange: String
        let routingKey: String
        let bodySize: Int
        let messageID: String?
        let headers: FieldTable?

        /// The same exchange, routing key, body size and message id.
        func isAlike(_ other: ReturnKey) -> Bool {
            exchange == other.exchange && routingKey == other.routingKey && bodySize == other.bodySize
                && messageID == other.messageID
        }

        /// Whether the headers a return came back with are those of this publish.
        func hasHeaders(like returned: ReturnKey) -> Bool {
            FieldValue.table(headers ?? [:]).routesAlike(.table(returned.headers ?? [:]))
        }
    }

    private(set) var nextSequence: UInt64 = 1
    private(set) var unconfirmed: Deque<Unconfirmed> = []
    /// Whether unconfirmed publishes are kept whole, to be republished after a recovery.
    let keepsPublishes: Bool

    init(keepsPublishes: Bool) {
        self.keepsPublishes = keepsPublishes
    }

    /// Registers a publish that was just sent, numbering its confirmation.
    func record(_ publish: PublishCommand, confirmation: PublishConfirmation, returnKey: ReturnKey?) {
        confirmation.assign(sequenceNumber: nextSequence)
        unconfirmed.append(
            Unconfirmed(
                sequence: nextSequence, confirmation: confirmation, publish: keepsPublishes ? publish : nil,
                returnKey: returnKey))
        nextSequence += 1
    }

    /// The connection was lost: takes the unconfirmed publishes that can be sent again (in
    /// order). Their confirmations stay open; they settle when the broker confirms the copy.
    func takeUnconfirmedForRepublishing() -> [PublishCommand] {
        var kept: [PublishCommand] = []
        unconfirmed.removeAll { entry in
            guard let publish = entry.publish, entry.returned == nil else { return false }
            kept.append(publish)
            return true
        }
        return kept
    }

    /// `basic.ack` (or `basic.nack` when `nacked`) for `tag`, or for every sequence up to it when
    /// `multiple`. Returns how many publishes it settled (0: the tag matches nothing outstanding).
    func confirm(tag: UInt64, multiple: Bool, nacked: Bool) -> Int {
        var settled = 0
        if multiple {
            // Taken off the front one by one (moved out, not copied): a confirm of many
            // messages is the common case under load.
            while !unconfirmed.isEmpty, unconfirmed[unconfirmed.startIndex].sequence <= tag {
                settle(unconfirmed.removeFirst(), nacked: nacked)
                settled += 1
            }
        } else if let index = index(of: tag) {
            settle(unconfirmed.remove(at: index), nacked: nacked)
            settled = 1
        }
        return settled
    }

    private func settle(_ publish: Unconfirmed, nacked: Bool) {
        if nacked {
            publish.confirmation.resolve(
                .failure(publish.returned ?? AMQPError(.publishNacked, "the broker refused message \(publish.sequence) (basic.nack)")))
        } else if let returned = publish.returned {
            publish.confirmation.resolve(.failure(returned))
        } else {
            publish.confirmation.resolve(.success(()))
        }
    }

    /// Marks the publish a `basic.return` refers to; false when none matches.
    func markReturned(_ key: ReturnKey, error: AMQPError) -> Bool {
        let candidates = unconfirmed.indices.filter { index in
            unconfirmed[index].returned == nil && unconfirmed[index].returnKey?.isAlike(key) == true
        }
        guard let first = candidates.first else { return false }
        let index = candidates.first { unconfirmed[$0].returnKey?.hasHeaders(like: key) == true } ?? first
        unconfirmed[index].returned = error
        return true
    }

    /// The channel or connection closed: every unconfirmed publish's outcome is unknown.
    /// Returns how many there were.
    @discardableResult
    func failAll(_ error: AMQPError) -> Int {
        let count = unconfirmed.count
        // One the broker returned failed that way, whatever happened next.
        while let publish = unconfirmed.popFirst() { publish.confirmation.resolve(.failure(publish.returned ?? error)) }
        return count
    }

    /// Sequence numbers ascend through the deque: binary search.
    private func index(of sequence: UInt64) -> Int? {
        var low = unconfirmed.startIndex
        var high = unconfirmed.endIndex
        while low < high {
            let middle = (low + high) / 2
            if unconfirmed[middle].sequence < sequence { low = middle + 1 } else { high = middle }
        }
        return low < unconfirmed.endIndex && unconfirmed[low].sequence == sequence ? low : nil
    }
}

extension FieldValue {
    /// Equal as far as routing can tell after a trip through the broker: integers compare by
    /// value whatever their width (an unsigned 64-bit value may come back signed), tables entry
    /// by entry as RabbitMQ 4 re-encodes them (3.x keeps them as they were), arrays element by
    /// element.
    func routesAlike(_ other: FieldValue) -> Bool {
        switch (self, other) {
        case (.uint64(let value), .int64(let returned)), (.int64(let returned), .uint64(let value)):
            return Int64(bitPattern: value) == returned
        case (.table(let table), .table(let returned)):
            let (entries, returnedEntries) = (table.asReencodedByRabbitMQ4, returned.asReencodedByRabbitMQ4)
            return entries.count == returnedEntries.count
                && zip(entries, returnedEntries).allSatisfy { $0.exactKey == $1.exactKey && $0.value.routesAlike($1.value) }
        case (.array(let array), .array(let returned)):
            return array.count == returned.count && zip(array, returned).allSatisfy { $0.routesAlike($1) }
        default:
            if let value = int64Value, let returned = other.int64Value { return value == returned }
            return self == other
        }
    }
}

extension FieldTable {
    /// The entries as RabbitMQ 4 re-encodes a message's headers: the first entry of each key,
    /// ordered by the key's bytes.
    var asReencodedByRabbitMQ4: [Entry] {
        var seen = Set<ExactText>()
        return entries.filter { seen.insert($0.exactKey).inserted }.sorted { $0.keyBytes.lexicographicallyPrecedes($1.keyBytes) }
    }
}
