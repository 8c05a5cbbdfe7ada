internal import CRabbitMQ
import DequeModule
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Identifies one channel instance to the connection actor: its number, and an id that tells it
/// from earlier channels with the same number.
struct ChannelKey: Sendable, Hashable {
    let number: UInt16
    let id: UInt64
    let status: ChannelStatus
    /// The connection's negotiated frame size, for checks before publishing.
    let frameMax: UInt32

    static func == (lhs: ChannelKey, rhs: ChannelKey) -> Bool { lhs.id == rhs.id && lhs.number == rhs.number }
    func hash(into hasher: inout Hasher) { hasher.combine(id) }
}

/// The state of one AMQP connection: librabbitmq's connection and everything that depends on it.
///
/// An actor whose executor is the connection's own thread (``ConnectionExecutor``): its methods
/// run between polls of the event loop, so they may touch the C state, and nothing else can.
/// Synchronous AMQP methods are sent without waiting; the task awaits a continuation that the loop
/// resumes when the reply frame arrives, so any number of channels make progress at once.
///
/// The fields the loop touches on every turn and frame are `@exclusivity(unchecked)`: the
/// runtime's dynamic exclusivity checks cost about fifty calls per message at low rates. No two
/// accesses to them can overlap: the actor confines them to its one thread, and on that thread
/// each access is a plain read or assignment, or a mutating call of a plain struct
/// (`WriteCoalescer`, `LoopTicks`, the metrics counts) that cannot reach the actor again;
/// iterating `channels` or `channelsWithDeliveries` iterates a copy.
actor ConnectionCore {
    nonisolated let executor: ConnectionExecutor
    /// The same thread and queue for application tasks (``AMQPConnection/taskExecutor``).
    nonisolated let taskExecutor: ConnectionTaskExecutor
    nonisolated let configuration: AMQPConnection.Configuration
    nonisolated let logger: Logger
    nonisolated let status = ConnectionStatus()

    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    enum Phase {
        case connecting
        case open
        /// Lost; reconnecting (no C connection) or re-creating the channels, topology and
        /// consumers on the new connection.
        case recovering(RecoveryProgress)
        /// `connection.close` sent; waiting for `close-ok` until the deadline.
        case closing(deadline: ContinuousClock.Instant)
        case closed
    }

    let clock = ContinuousClock()
    @exclusivity(unchecked) var phase = Phase.connecting {
        didSet {
            if case .closing = phase { isClosing = true } else { isClosing = false }
        }
    }
    /// Whether `phase` is `.closing`: checked for every frame, where matching the enum would copy it.
    @exclusivity(unchecked) private(set) var isClosing = false
    @exclusivity(unchecked) var connection: amqp_connection_state_t? {
        didSet {
            let socket = connection.map { amqp_get_sockfd($0) } ?? -1
            writes = WriteCoalescer(socket: socket)
            // Frames appended for the old connection are for nobody now.
            outbound.removeAll()
            writesOwnFrames = false
            // A stuck write is bounded at two heartbeat intervals (at least 5 s); without
            // heartbeats nothing bounds it.
            let heartbeat = connection.map { Int(amqp_get_heartbeat($0)) } ?? 0
            executor.watch(socket: socket, limit: heartbeat > 0 ? max(.seconds(2 * heartbeat), .seconds(5)) : .zero)
        }
    }
    /// Packs the frames written between two waits into as few segments as possible.
    @exclusivity(unchecked) var writes = WriteCoalescer()
    /// Publishes and acknowledgements the engine encodes itself and writes once per batch of
    /// commands (see ``OutboundFrames``); empty whenever librabbitmq may write.
    let outbound = OutboundFrames()
    /// Whether the engine writes the current connection's publishes and acknowledgements itself:
    /// on plain TCP (over TLS only librabbitmq can write to the socket).
    @exclusivity(unchecked) var writesOwnFrames = false
    @exclusivity(unchecked) var channels: [UInt16: ChannelRecord] = [:] {
        didSet { lastChannel = nil }
    }
    /// The channel of the last frame read: a message's frames (and a consumer's messages) come
    /// one after another on one channel, so the next frame usually needs no dictionary lookup.
    @exclusivity(unchecked) private var lastChannel: ChannelRecord?

    /// The open (or closing) channel with `number`.
    func channel(_ number: UInt16) -> ChannelRecord? {
        if let lastChannel, lastChannel.number == number { return lastChannel }
        lastChannel = channels[number]
        return lastChannel
    }
    var nextChannelID: UInt64 = 1
    var channelMax: UInt16 = 0
    var frameMax: UInt32 = 0
    var heartbeat: Duration = .zero
    /// Why the connection is closed (or closing); every later call fails with it.
    var closeReason: AMQPError?
    var closeWaiters: [CheckedContinuation<Void, Never>] = []
    /// The broker's reason while it blocks publishing (`connection.blocked`).
    var blockedReason: String?
    /// Publishes handed over while the broker blocks the connection, sent when it unblocks.
    var heldPublishes: Deque<PublishCommand> = []
    /// Reused for every publish's C strings and tables.
    let scratch = CArena()
    /// Publishes waiting for `connection.unblocked`, each until its deadline.
    var blockedPublishers: [(id: Int, continuation: CheckedContinuation<Void, any Error>, deadline: ContinuousClock.Instant)] = []
    /// Channels whose consumers got deliveries this turn, handed over at its end.
    @exclusivity(unchecked) var channelsWithDeliveries: [ChannelRecord] = []
    /// Numbers client-generated consumer tags.
    var nextConsumerNumber = 1
    /// Messages published, delivered and acknowledged since the metrics were last told (see
    /// ``reportMessageCounts()``).
    @exclusivity(unchecked) var unreportedCounts = ConnectionMetrics.UnreportedCounts()
    /// When the broker blocked the connection, while it does.
    var blockedSince: ContinuousClock.Instant?
    /// Whether the warning that TLS verification is off was logged (once per connection).
    var warnedAboutVerification = false
    /// What the application declared, for recovery to declare again.
    let topology = TopologyRecord()
    /// Counts the C connections this actor has had: work begun on one ignores later ones.
    var generation = 0
    /// The endpoint of the current (or last) C connection, in ``Configuration/endpoints``.
    var endpointIndex = 0
    /// Calls that wait for the recovery to finish, each until its deadline.
    var recoveryWaiters: [(id: Int, continuation: CheckedContinuation<Void, any Error>, deadline: ContinuousClock.Instant)] = []
    /// A reconnect attempt runs on its thread (see ``attemptReconnect()``).
    var isReconnecting = false
    /// Numbers the waits a caller may cancel (see ``waitCancellably(_:)``).
    var nextWaiterID = 0
    /// Publishes the broker had not confirmed when the connection was lost, to send again after
    /// the recovery (with ``Configuration/Recovery/republishUnconfirmed``).
    var republishQueue: Deque<PublishCommand> = []
    let metrics: ConnectionMetrics
    /// When the last byte arrived from the broker, for the missed-heartbeat watchdog.
    @exclusivity(unchecked) var lastInbound: ContinuousClock.Instant
    /// How long the loop may sleep (see ``LoopTicks``).
    @exclusivity(unchecked) var ticks = LoopTicks(heartbeat: .zero)
    /// The loop's next turn without news from the socket or a job.
    @exclusivity(unchecked) var nextTick: ContinuousClock.Instant
    /// When the last turn of the loop read the clock (see ``turn()``).
    @exclusivity(unchecked) var lastTurn: ContinuousClock.Instant
    /// When the loop last told the stall watchdog it went round.
    @exclusivity(unchecked) var progressMarkedAt: ContinuousClock.Instant
    /// `nextTick` was set for timed work (at most ``LoopTicks/timerResolution`` away).
    @exclusivity(unchecked) var nextTickIsTimed = true

    init(configuration: AMQPConnection.Configuration, logger: Logger) {
        self.executor = ConnectionExecutor()
        self.taskExecutor = ConnectionTaskExecutor(executor)
        self.configuration = configuration
        self.logger = logger
        self.lastInbound = clock.now
        self.nextTick = clock.now
        self.lastTurn = clock.now
        self.progressMarkedAt = clock.now
        self.metrics = ConnectionMetrics(connectionName: configuration.connectionName)
    }

    // MARK: - Connecting

    /// Connects and logs in to the first endpoint that accepts, blocking the connection's
    /// thread (nothing else can use it yet) for at most the connection timeout per endpoint.
    func connect() throws {
        var lastError = AMQPError(.connectionFailed, "no endpoint to connect to")
        for (index, endpoint) in configuration.endpoints.enumerated() {
            do {
                adopt(try establish(endpoint), endpointIndex: index)
                return
            } catch {
                lastError = error
                logger.debug("connection failed", metadata: ["amqp.endpoint": "\(endpoint)", "amqp.error": "\(error)"])
                // Wrong credentials or vhost are wrong on every node.
                if error.code == .accessRefused { break }
            }
        }
        phase = .closed
        closeReason = lastError
        status.update { $0.closeReason = lastError }
        status.publish(.closed(lastError))
        throw lastError
    }

    /// A new C connection to `endpoint`, logged in; blocks for at most the connection timeout.
    ///
    /// Nonisolated: a reconnect runs it on a thread of its own, so the connection's thread stays
    /// free meanwhile; the new C connection is touched by nothing else until it is handed over.
    nonisolated func establish(_ endpoint: AMQPConnection.Configuration.Endpoint) throws(AMQPError) -> amqp_connection_state_t {
        let deadline = clock.now + configuration.connectionTimeout
        guard let connection = amqp_new_connection() else {
            throw AMQPError(.libraryFailure, "amqp_new_connection failed (out of memory)")
        }
        do {
            try openSocket(connection, endpoint: endpoint, deadline: deadline)
            try logIn(connection, deadline: deadline)
            return connection
        } catch let error as AMQPError {
            amqp_destroy_connection(connection)
            throw error
        } catch {
            amqp_destroy_connection(connection)
            throw AMQPError(.libraryFailure, "\(error)")
        }
    }

    /// Makes a logged-in C connection the current one: the negotiated limits, the timers and the
    /// status follow it.
    func adopt(_ connection: amqp_connection_state_t, endpointIndex: Int) {
        self.connection = connection
        self.endpointIndex = endpointIndex
        generation += 1
        if let tls = configuration.tls, !tls.verifyPeer, !warnedAboutVerification {
            warnedAboutVerification = true
            logger.warning(
                "TLS certificate verification is turned off",
                metadata: ["amqp.endpoint": "\(configuration.endpoints[endpointIndex])"])
        }
        if case .connecting = phase { phase = .open }
        let negotiatedChannelMax = amqp_get_channel_max(connection)
        channelMax = negotiatedChannelMax == 0 ? .max : UInt16(clamping: negotiatedChannelMax)
        frameMax = UInt32(clamping: amqp_get_frame_max(connection))
        // 4096 is the protocol's smallest frame_max; below it (or 0, no limit) leave it to librabbitmq.
        writesOwnFrames = configuration.tls == nil && frameMax >= 4096
        let negotiatedHeartbeat = amqp_get_heartbeat(connection)
        heartbeat = .seconds(negotiatedHeartbeat)
        ticks = LoopTicks(heartbeat: heartbeat)
        lastInbound = clock.now
        lastTurn = lastInbound
        nextTick = clock.now + ticks.interval(timed: true)
        nextTickIsTimed = true
        let serverProperties = amqp_get_server_properties(connection).flatMap { try? FieldTable(copying: $0.pointee) } ?? [:]
        let negotiated = AMQPConnection.NegotiatedParameters(
            channelMax: channelMax, frameMax: frameMax,
            heartbeat: UInt16(clamping: negotiatedHeartbeat))
        let isOpen = if case .open = phase { true } else { false }
        status.update {
            $0.isOpen = isOpen
            $0.negotiated = negotiated
            $0.serverProperties = serverProperties
        }
        logger.debug(
            "connection open",
            metadata: [
                "amqp.endpoint": "\(configuration.endpoints[endpointIndex])",
                "amqp.channel_max": "\(negotiated.channelMax)", "amqp.frame_max": "\(negotiated.frameMax)",
                "amqp.heartbeat": "\(negotiated.heartbeat)",
            ])
    }

    nonisolated func openSocket(
        _ connection: amqp_connection_state_t, endpoint: AMQPConnection.Configuration.Endpoint,
        deadline: ContinuousClock.Instant
    ) throws {
        let socket: OpaquePointer?
        if let tls = configuration.tls {
            socket = amqp_ssl_socket_new(connection)
            guard let socket else { throw AMQPError(.libraryFailure, "could not create a TLS socket") }
            if let file = tls.caCertificateFile {
                try check(amqp_ssl_socket_set_cacert(socket, file), "could not load the CA certificates from \(file)")
            }
            if let certificate = tls.certificateFile, let key = tls.keyFile {
                // librabbitmq keeps the passphrase's pointer (OpenSSL reads it while loading the
                // key): it must outlive set_key, and is cleared from the context right after.
                let status = (tls.keyPassword ?? "").withCString { password in
                    if tls.keyPassword != nil { amqp_ssl_socket_set_key_passwd(socket, password) }
                    defer { if tls.keyPassword != nil { amqp_ssl_socket_set_key_passwd(socket, nil) } }
                    return amqp_ssl_socket_set_key(socket, certificate, key)
                }
                try check(status, "could not load the client certificate \(certificate) and key \(key)")
            }
            amqp_ssl_socket_set_verify_peer(socket, tls.verifyPeer ? 1 : 0)
            amqp_ssl_socket_set_verify_hostname(socket, tls.verifyPeer ? 1 : 0)
            let minimum: amqp_tls_version_t =
                switch tls.minimumVersion {
                case .v1_0: AMQP_TLSv1
                case .v1_1: AMQP_TLSv1_1
                case .v1_2: AMQP_TLSv1_2
                }
            try check(amqp_ssl_socket_set_ssl_versions(socket, minimum, AMQP_TLSvLATEST), "could not set the TLS versions")
        } else {
            socket = amqp_tcp_socket_new(connection)
        }
        guard let socket else { throw AMQPError(.libraryFailure, "could not create a socket") }

        var timeout = timeval(clock.now.duration(to: deadline))
        let status = amqp_socket_open_noblock(socket, endpoint.host, Int32(endpoint.port), &timeout)
        guard status != AMQP_STATUS_OK.rawValue else { return }
        let reason = String(cString: amqp_error_string2(status))
        switch status {
        case AMQP_STATUS_TIMEOUT.rawValue:
            throw AMQPError(
                .timeout, "could not connect to \(endpoint) within \(configuration.connectionTimeout)",
                libraryStatus: status)
        default:
            throw AMQPError(.connectionFailed, "could not connect to \(endpoint): \(reason)", libraryStatus: status)
        }
    }

    nonisolated func logIn(_ connection: amqp_connection_state_t, deadline: ContinuousClock.Instant) throws {
        let remaining = clock.now.duration(to: deadline)
        guard remaining > .zero else {
            throw AMQPError(.timeout, "connecting took the whole connection timeout (\(configuration.connectionTimeout))")
        }
        var handshakeTimeout = timeval(remaining)
        amqp_set_handshake_timeout(connection, &handshakeTimeout)

        let arena = CArena()
        defer { withExtendedLifetime(arena) {} }  // librabbitmq reads the arena's memory until login returns
        var properties = try arena.table(clientProperties)
        let vhost = arena.cString(configuration.virtualHost)
        let channelMax = Int32(configuration.channelMax)
        let frameMax = Int32(clamping: configuration.frameMax)
        let heartbeat = Int32(configuration.heartbeat)
        let reply: amqp_rpc_reply_t
        switch configuration.authMechanism {
        case .plain:
            reply = crmq_login_plain(
                connection, vhost, channelMax, frameMax, heartbeat, &properties,
                arena.cString(configuration.user), arena.cString(configuration.password))
        case .external:
            reply = crmq_login_external(
                connection, vhost, channelMax, frameMax, heartbeat, &properties, arena.cString(configuration.user))
        }

        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return
        case AMQP_RESPONSE_SERVER_EXCEPTION where reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD:
            let close = reply.reply.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            let code: AMQPError.Code = close.reply_code == 403 ? .accessRefused : .connectionClosed
            throw AMQPError(
                code, "the broker refused the login to vhost '\(configuration.virtualHost)' as '\(configuration.user)'",
                replyCode: close.reply_code, replyText: String(copying: close.reply_text),
                classID: close.class_id, methodID: close.method_id)
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            let status = reply.library_error
            let reason = String(cString: amqp_error_string2(status))
            switch status {
            case AMQP_STATUS_TIMEOUT.rawValue:
                throw AMQPError(
                    .timeout, "the broker did not complete the AMQP handshake within \(configuration.connectionTimeout)",
                    libraryStatus: status)
            case AMQP_STATUS_CONNECTION_CLOSED.rawValue, AMQP_STATUS_SOCKET_ERROR.rawValue:
                throw AMQPError(
                    .connectionClosed, "the broker dropped the connection during login: \(reason)", libraryStatus: status)
            default:
                throw AMQPError(.libraryFailure, "login failed: \(reason)", libraryStatus: status)
            }
        default:
            throw AMQPError(.protocolError, "login failed with an unexpected reply from the broker")
        }
    }

    /// What the client tells the broker about itself. librabbitmq announces only two
    /// capabilities by default; without the others RabbitMQ never sends consumer cancellations
    /// or blocked notifications.
    nonisolated var clientProperties: FieldTable {
        var properties: FieldTable = [
            "product": "swift-rabbitmq",
            "version": .string(swiftRabbitMQVersion),
            "platform": "Swift",
            "information": .string("librabbitmq \(String(cString: amqp_version()))"),
            "capabilities": [
                "publisher_confirms": true,
                "consumer_cancel_notify": true,
                "basic.nack": true,
                "connection.blocked": true,
                "authentication_failure_close": true,
                "exchange_exchange_bindings": true,
                "per_consumer_qos": true,
            ],
        ]
        if let name = configuration.connectionName {
            properties["connection_name"] = .string(name)
        }
        return properties
    }

    nonisolated func check(_ status: Int32, _ message: @autoclosure () -> String) throws {
        guard status == AMQP_STATUS_OK.rawValue else {
            throw AMQPError(
                .invalidArgument, "\(message()): \(String(cString: amqp_error_string2(status)))", libraryStatus: status)
        }
    }

    // MARK: - Channels

    /// Opens a channel on the lowest free number.
    func openChannel() async throws -> ChannelKey {
        try await waitUntilOpen()
        guard let number = (1...max(channelMax, 1)).first(where: { channels[$0] == nil }) else {
            throw AMQPError(.channelLimitReached, "all \(channelMax) channels of the connection are in use")
        }
        let record = ChannelRecord(number: number, id: nextChannelID)
        nextChannelID += 1
        channels[number] = record
        try await openOnBroker(record)
        logger.trace("channel open", metadata: ["amqp.channel": "\(number)"])
        return ChannelKey(number: number, id: record.id, status: record.status, frameMax: frameMax)
    }

    /// Closes a channel: `channel.close`, then waits for `close-ok` (at most the RPC timeout).
    /// Returns at once when the channel is already closed or closing.
    func closeChannel(_ key: ChannelKey) async {
        // While the connection recovers the channel is being re-created: close it afterwards.
        if isRecovering { try? await waitUntilOpen() }
        guard let record = channels[key.number], record.id == key.id, record.isUsable else { return }
        record.phase = .closing
        record.status.markClosed(AMQPError(.channelClosed, "channel \(key.number) was closed by the application"))
        _ = try? await send(on: record, AMQP_CHANNEL_CLOSE_METHOD, expecting: [AMQP_CHANNEL_CLOSE_OK_METHOD]) { arena in
            amqp_channel_close_t(reply_code: UInt16(AMQP_REPLY_SUCCESS), reply_text: arena.bytes("Goodbye"), class_id: 0, method_id: 0)
        }
    }

    /// Sends a synchronous method on an open channel and waits for its reply.
    ///
    /// `build` makes the method's C struct; anything it allocates lives in the arena until the
    /// method is encoded. It runs before anything is sent, so a validation error it throws leaves
    /// the channel untouched.
    func call<Method: BitwiseCopyable>(
        on key: ChannelKey, _ method: amqp_method_number_t, expecting replies: [amqp_method_number_t],
        autoAck: Bool = false, recording: TopologyChange? = nil, build: @Sendable (CArena) throws -> Method
    ) async throws -> MethodReply {
        let record = try await usableRecord(key)
        return try await send(
            on: record, method, expecting: replies, autoAck: autoAck, recording: recording, build: build)
    }

    /// The channel's record, if the connection is open (after waiting for a recovery) and the
    /// channel is this instance and open.
    func usableRecord(_ key: ChannelKey) async throws -> ChannelRecord {
        try await waitUntilOpen()
        guard let record = channels[key.number], record.id == key.id, record.isUsable else {
            throw key.status.closeReason ?? AMQPError(.channelClosed, "channel \(key.number) is closed")
        }
        return record
    }

    /// Queues a synchronous method on the channel and waits for its reply. The method is
    /// transmitted at once if the channel has nothing in flight, otherwise when the replies
    /// before it have arrived (see ``PendingReply``).
    func send<Method: BitwiseCopyable>(
        on record: ChannelRecord, _ methodID: amqp_method_number_t, expecting replies: [amqp_method_number_t],
        autoAck: Bool = false, recording: TopologyChange? = nil, onTransmit: (() -> Void)? = nil,
        build: (CArena) throws -> Method
    ) async throws -> MethodReply {
        try Task.checkCancellation()  // a cancelled caller sends nothing
        let arena = CArena()
        var method = try build(arena)
        guard connection != nil else {
            throw closeReason ?? AMQPError(.connectionClosed, "the connection is closed")
        }
        let number = record.number
        // librabbitmq encodes the method (reading the arena's memory) while amqp_send_method runs.
        let transmit = { (connection: amqp_connection_state_t) in
            withExtendedLifetime(arena) { amqp_send_method(connection, number, methodID, &method) }
        }
        return try await waitCancellably { id, continuation in
            // Checked again: the channel or the connection may have ended before this runs (a
            // channel the broker closed is gone from `channels` or draining).
            var ended = self.connection == nil || channels[number] !== record
            if case .draining = record.phase { ended = true }
            guard !ended else {
                continuation.resume(
                    throwing: record.status.closeReason ?? closeReason
                        ?? AMQPError(.channelClosed, "channel \(number) is closed"))
                return
            }
            record.pending.append(
                PendingReply(
                    expected: replies, continuation: ReplyWaiter(id: id, continuation), name: methodID.methodName,
                    autoAck: autoAck,
                    transmit: transmit, onTransmit: onTransmit, recording: recording))
            transmitNext(on: record)
        }
    }

    /// Sends the oldest queued synchronous method of the channel if nothing is in flight.
    func transmitNext(on record: ChannelRecord) {
        assert(executor.isOwnerThread, "swift-rabbitmq: a channel's methods were sent off the connection's thread")
        guard let connection, let transmit = record.pending.first?.transmit else { return }
        record.pending[0].transmit = nil
        record.pending[0].deadline = clock.now + configuration.rpcTimeout
        writes.willWrite()
        let status = transmit(connection)
        if status != AMQP_STATUS_OK.rawValue {
            tearDown(connectionLost(status: status, while: "sending \(record.pending.first?.name ?? "a method")"))
        } else if let onTransmit = record.pending.first?.onTransmit {
            record.pending[0].onTransmit = nil
            onTransmit()
        }
    }

    /// Sends a method that has no reply (`close-ok`, `flow-ok`). A failed send tears the
    /// connection down.
    func sendWithoutReply<Method: BitwiseCopyable>(_ methodID: amqp_method_number_t, _ method: Method, on channel: UInt16) {
        guard let connection else { return }
        var method = method
        writes.willWrite()
        let status = amqp_send_method(connection, channel, methodID, &method)
        if status != AMQP_STATUS_OK.rawValue {
            tearDown(connectionLost(status: status, while: "sending \(methodID.methodName)"))
        }
    }

    func ensureOpen() throws {
        guard case .open = phase else {
            throw closeReason ?? AMQPError(.connectionClosed, "the connection is not open")
        }
    }

    /// Returns when the connection is open: at once, or once a recovery in progress has
    /// finished (at most the RPC timeout). Throws when it is closed for good.
    func waitUntilOpen() async throws {
        while case .recovering = phase {
            try await waitCancellably { id, continuation in
                // Checked again: the recovery may have ended before this runs.
                guard case .recovering = phase else { return continuation.resume() }
                recoveryWaiters.append((id, continuation, clock.now + configuration.rpcTimeout))
            }
        }
        try ensureOpen()
    }

    // MARK: - Closing

    /// Drops the connection without the closing handshake (the socket closes, nothing is sent):
    /// to the broker it is a lost connection. No recovery follows. Idempotent.
    func abort() {
        // Shut down first: both directions end with an orderly FIN, as when the peer's process
        // exits, whatever is still unread (a close alone would answer unread data with a reset).
        if let connection {
            let socket = amqp_get_sockfd(connection)
            if socket >= 0 { _ = shutdown(socket, Int32(SHUT_RDWR)) }
        }
        shutDown(AMQPError(.connectionClosed, "the connection was aborted by the application"))
    }

    /// Closes the connection: `connection.close`, then waits for `close-ok` (at most the close
    /// timeout) and releases the socket. Calls waiting for replies fail at once.
    func close() async {
        switch phase {
        case .closed, .connecting:
            return
        case .recovering:
            // Nothing on the broker's side worth a handshake: drop whatever connection there is.
            shutDown(AMQPError(.connectionClosed, "the connection was closed by the application"))
            return
        case .closing:
            await waitUntilClosed()
            return
        case .open:
            break
        }
        let error = AMQPError(.connectionClosed, "the connection was closed by the application")
        phase = .closing(deadline: clock.now + configuration.closeTimeout)
        closeReason = error
        status.update { $0.isOpen = false }
        // After connection.close the broker ignores everything but close-ok: nothing pending
        // will be answered.
        failChannels(error, applicationInitiated: true)
        failBlockedPublishers(error)
        status.publish(.closed(error))
        let arena = CArena()
        sendWithoutReply(
            AMQP_CONNECTION_CLOSE_METHOD,
            amqp_connection_close_t(
                reply_code: UInt16(AMQP_REPLY_SUCCESS), reply_text: arena.bytes("Goodbye"), class_id: 0, method_id: 0),
            on: 0)
        withExtendedLifetime(arena) {}
        guard connection != nil else { return }
        await waitUntilClosed()
    }

    /// Waits until ``shutDown(_:)`` has run.
    ///
    /// The continuation's closure runs on the actor, but not always at once: for a task that
    /// prefers the connection's thread the runtime may hop through the task's executor first,
    /// and the loop's next turn (the broker's `close-ok`, the shutdown) can come in between
    /// (seen under load: the close then waited for ever). So the phase is checked again inside,
    /// as every registration of a waiter in this actor does.
    private func waitUntilClosed() async {
        await withCheckedContinuation { continuation in
            if case .closed = phase { continuation.resume() } else { closeWaiters.append(continuation) }
        }
    }

    /// The connection failed (socket, heartbeats, the broker's `connection.close`, a protocol
    /// violation): recover when recovery is on and the application has not begun closing it,
    /// otherwise end it for good.
    func tearDown(_ error: AMQPError) {
        switch phase {
        case .closed:
            return
        case .open, .recovering:
            if configuration.recovery.isEnabled {
                beginRecovery(after: error)
            } else {
                shutDown(error)
            }
        case .connecting, .closing:
            shutDown(error)
        }
    }

    /// Ends the connection for good: fails every waiting call and every later one with `error`,
    /// and releases librabbitmq's state (closing the socket). Idempotent.
    func shutDown(_ error: AMQPError) {
        if case .closed = phase { return }
        phase = .closed
        generation += 1  // a recovery in progress stops
        if closeReason == nil { closeReason = error }
        let reason = closeReason ?? error
        status.update {
            $0.isOpen = false
            $0.isRecovering = false
            $0.closeReason = reason
            $0.blockedReason = nil
        }
        failChannels(reason)
        failBlockedPublishers(reason)
        failRecoveryWaiters(reason)
        channels.removeAll()
        releaseConnection()
        for waiter in closeWaiters { waiter.resume() }
        closeWaiters.removeAll()
        status.publish(.closed(reason))
        logger.debug("connection closed", metadata: ["amqp.reason": "\(reason)"])
    }

    func failChannels(_ error: AMQPError, applicationInitiated: Bool = false) {
        for record in channels.values {
            record.status.markClosed(error)
            record.terminate(first: error, rest: error, consumersEndNormally: applicationInitiated)
        }
    }

    /// Destroys the current C connection (closing its socket), after the stall watchdog stopped
    /// watching the socket.
    func releaseConnection() {
        guard let connection else { return }
        executor.watch(socket: -1, limit: .zero)
        amqp_destroy_connection(connection)
        self.connection = nil
    }

    /// The error for a librabbitmq status that ended the connection.
    func connectionLost(status: Int32, while activity: String) -> AMQPError {
        if executor.takeStalled() {
            return AMQPError(
                .heartbeatMissed,
                "the connection's thread made no progress for two heartbeat intervals while \(activity) (the peer stopped reading); the socket was shut down",
                libraryStatus: status)
        }
        let reason = String(cString: amqp_error_string2(status))
        switch status {
        case AMQP_STATUS_HEARTBEAT_TIMEOUT.rawValue:
            return AMQPError(
                .heartbeatMissed, "the broker sent nothing for two heartbeat intervals (\(heartbeat * 2))",
                libraryStatus: status)
        case AMQP_STATUS_BAD_AMQP_DATA.rawValue, AMQP_STATUS_UNKNOWN_CLASS.rawValue,
            AMQP_STATUS_UNKNOWN_METHOD.rawValue:
            return AMQPError(.protocolError, "the broker sent data that is not AMQP: \(reason)", libraryStatus: status)
        default:
            return AMQPError(.connectionClosed, "the connection failed while \(activity): \(reason)", libraryStatus: status)
        }
    }
}

extension AMQPError {
    /// The error for the call a broker-initiated `channel.close` answers, coded by the reply code.
    static func brokerClosedChannel(replyCode: UInt16, replyText: String, classID: UInt16, methodID: UInt16) -> AMQPError {
        let code: Code
        switch replyCode {
        case 403: code = .accessRefused
        case 404: code = .notFound
        case 405: code = .resourceLocked
        case 406: code = .preconditionFailed
        default: code = .channelClosed
        }
        return AMQPError(
            code, "the broker closed the channel", replyCode: replyCode, replyText: replyText, classID: classID,
            methodID: methodID)
    }
}

extension timeval {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = max(duration, .zero).components
        self.init()
        tv_sec = .init(seconds)
        tv_usec = .init(attoseconds / 1_000_000_000_000)
    }
}
