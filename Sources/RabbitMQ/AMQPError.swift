/// An error from the client, the library underneath it, or the broker.
///
/// Every failure of this package is an `AMQPError`. Match on ``code`` to decide what to do; the
/// broker's own words are in ``replyCode`` and ``replyText`` when the broker closed a channel or
/// the connection.
///
/// ```swift
/// do {
///     _ = try await channel.queueDeclare("orders", passive: true)
/// } catch let error as AMQPError where error.code == .notFound {
///     print(error.replyText ?? "")   // "NOT_FOUND - no queue 'orders' in vhost '/'"
/// }
/// ```
///
/// The description never contains a password: errors are built from host names, reply texts and
/// status strings, never from a URI or credentials.
public struct AMQPError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is. New codes may be added; switch with a `default` case.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case connectionClosed, channelClosed, accessRefused, notFound, preconditionFailed
            case resourceLocked, timeout, heartbeatMissed, publishNacked, publishReturned
            case blockedTimeout, invalidArgument, libraryFailure, connectionFailed
            case protocolError, channelLimitReached, consumerCancelled, alreadyAcknowledged
            case staleDelivery, recoveryFailed, transactionLost, unreadableMessage
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The connection is closed: by the broker (``AMQPError/replyCode`` says why), by the
        /// application, or because the socket failed.
        public static let connectionClosed = Code(.connectionClosed)
        /// The channel is closed: by the broker after an error on it (the reply code and text
        /// say which), or by the application.
        public static let channelClosed = Code(.channelClosed)
        /// 403 ACCESS_REFUSED: wrong credentials, or no permission for the resource.
        public static let accessRefused = Code(.accessRefused)
        /// 404 NOT_FOUND: the exchange or queue does not exist.
        public static let notFound = Code(.notFound)
        /// 406 PRECONDITION_FAILED: e.g. a redeclare with different arguments.
        public static let preconditionFailed = Code(.preconditionFailed)
        /// 405 RESOURCE_LOCKED: e.g. an exclusive queue of another connection.
        public static let resourceLocked = Code(.resourceLocked)
        /// An operation did not finish within its deadline (connect, login, an RPC, close).
        public static let timeout = Code(.timeout)
        /// The broker sent nothing for two heartbeat intervals.
        public static let heartbeatMissed = Code(.heartbeatMissed)
        /// The broker refused a published message (`basic.nack`).
        public static let publishNacked = Code(.publishNacked)
        /// A `mandatory` message could not be routed and came back (`basic.return`).
        public static let publishReturned = Code(.publishReturned)
        /// The connection stayed blocked by the broker longer than the publish was willing to wait.
        public static let blockedTimeout = Code(.blockedTimeout)
        /// An argument was rejected before anything was sent.
        public static let invalidArgument = Code(.invalidArgument)
        /// librabbitmq reported a failure that has no better code (see ``AMQPError/libraryStatus``).
        public static let libraryFailure = Code(.libraryFailure)
        /// The TCP connection could not be established (refused, unreachable, name not resolved).
        public static let connectionFailed = Code(.connectionFailed)
        /// The peer broke the AMQP protocol (an unexpected frame or method).
        public static let protocolError = Code(.protocolError)
        /// Every channel number the connection negotiated is in use.
        public static let channelLimitReached = Code(.channelLimitReached)
        /// The broker cancelled a consumer (its queue was deleted, for instance).
        public static let consumerCancelled = Code(.consumerCancelled)
        /// A delivery was acknowledged, rejected or auto-acknowledged already, or its tag is not
        /// outstanding on the channel. Nothing was sent, so the channel stays open.
        public static let alreadyAcknowledged = Code(.alreadyAcknowledged)
        /// The delivery arrived on a connection that has since been lost and recovered: its tag
        /// means nothing on the new one, so it cannot be acknowledged. The broker redelivers the
        /// message (flagged as redelivered). Nothing was sent.
        public static let staleDelivery = Code(.staleDelivery)
        /// Automatic recovery gave up (see ``AMQPConnection/Configuration/Recovery``): the
        /// connection is closed for good; the message says what the last attempt met.
        public static let recoveryFailed = Code(.recoveryFailed)
        /// The connection was lost and recovered in the middle of a transaction: what it
        /// published and acknowledged before the loss is gone, so ``AMQPChannel/txCommit()``
        /// rolls back the rest and fails with this. The next transaction starts clean.
        public static let transactionLost = Code(.transactionLost)
        /// A received message nests header tables and arrays deeper than
        /// ``FieldTable/maximumDepth``: nothing could hold it without changing it, so the client
        /// rejected it without requeueing (to the queue's dead-letter exchange, if it has one)
        /// rather than hand over a changed copy. ``AMQPChannel/basicGet(queue:autoAck:)`` throws this.
        public static let unreadableMessage = Code(.unreadableMessage)

        public var description: String { base.rawValue }
    }

    /// What kind of failure this is.
    public var code: Code
    /// What went wrong, in the client's words.
    public var message: String
    /// The broker's reply code (e.g. 404, 320) when the broker closed a channel or the connection.
    public var replyCode: UInt16?
    /// The broker's reply text (e.g. `NOT_FOUND - no queue 'x' in vhost '/'`).
    public var replyText: String?
    /// The AMQP class and method the broker's close refers to, e.g. `(50, 10)` for `queue.declare`.
    public var classID: UInt16?
    /// See ``classID``.
    public var methodID: UInt16?
    /// The librabbitmq status code (an `AMQP_STATUS_*` value) when the library reported the failure.
    public var libraryStatus: Int32?

    /// Creates an error. The client builds these; tests and wrappers may too.
    public init(
        _ code: Code, _ message: String, replyCode: UInt16? = nil, replyText: String? = nil,
        classID: UInt16? = nil, methodID: UInt16? = nil, libraryStatus: Int32? = nil
    ) {
        self.code = code
        self.message = message
        self.replyCode = replyCode
        self.replyText = replyText
        self.classID = classID
        self.methodID = methodID
        self.libraryStatus = libraryStatus
    }

    public var description: String {
        var text = "AMQPError.\(code): \(message)"
        if let replyCode {
            text += " (broker: \(replyCode)"
            if let replyText { text += " \(replyText)" }
            if let classID, let methodID, classID != 0 {
                text += ", in \(AMQPMethodName.name(classID: classID, methodID: methodID))"
            }
            text += ")"
        }
        if let libraryStatus { text += " [librabbitmq status \(libraryStatus)]" }
        return text
    }
}

extension AMQPError {
    /// The same broker reason, re-coded for a later call on the closed channel or connection.
    func asClosed(_ code: Code, _ message: String) -> AMQPError {
        var copy = self
        copy.code = code
        copy.message = message + ": " + self.message
        return copy
    }
}

/// Names of AMQP methods for error messages (`queue.declare` reads better than `(50, 10)`).
enum AMQPMethodName {
    static func name(classID: UInt16, methodID: UInt16) -> String {
        let names: [UInt16: (String, [UInt16: String])] = [
            10: ("connection", [10: "start", 11: "start-ok", 20: "secure", 30: "tune", 31: "tune-ok",
                                40: "open", 41: "open-ok", 50: "close", 51: "close-ok"]),
            20: ("channel", [10: "open", 11: "open-ok", 20: "flow", 21: "flow-ok", 40: "close", 41: "close-ok"]),
            40: ("exchange", [10: "declare", 11: "declare-ok", 20: "delete", 21: "delete-ok",
                              30: "bind", 31: "bind-ok", 40: "unbind", 51: "unbind-ok"]),
            50: ("queue", [10: "declare", 11: "declare-ok", 20: "bind", 21: "bind-ok", 30: "purge",
                           31: "purge-ok", 40: "delete", 41: "delete-ok", 50: "unbind", 51: "unbind-ok"]),
            60: ("basic", [10: "qos", 11: "qos-ok", 20: "consume", 21: "consume-ok", 30: "cancel",
                           31: "cancel-ok", 40: "publish", 50: "return", 60: "deliver", 70: "get",
                           71: "get-ok", 72: "get-empty", 80: "ack", 90: "reject", 100: "recover-async",
                           110: "recover", 111: "recover-ok", 120: "nack"]),
            85: ("confirm", [10: "select", 11: "select-ok"]),
            90: ("tx", [10: "select", 11: "select-ok", 20: "commit", 21: "commit-ok", 30: "rollback",
                        31: "rollback-ok"]),
        ]
        guard let (className, methods) = names[classID] else { return "method \(classID).\(methodID)" }
        return "\(className).\(methods[methodID] ?? String(methodID))"
    }
}
