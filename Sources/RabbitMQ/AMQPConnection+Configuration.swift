import Logging

extension AMQPConnection {
    /// Everything needed to open a connection: where, who, and the protocol limits to ask for.
    ///
    /// Build one from an AMQP URI, then adjust what the URI cannot say:
    ///
    /// ```swift
    /// var configuration = try AMQPConnection.Configuration(
    ///     url: "amqp://guest:guest@localhost:5672/%2f?heartbeat=30&connection_timeout=5000")
    /// configuration.connectionName = "order-service"
    /// let connection = try await AMQPConnection.open(configuration)
    /// ```
    ///
    /// The defaults suit most applications: heartbeats every 60 s, 128 KiB frames, the broker's
    /// channel limit, a 30 s connect timeout.
    public struct Configuration: Sendable {
        /// How the client proves who it is.
        public enum AuthMechanism: String, Sendable, Hashable {
            /// User name and password (SASL PLAIN).
            case plain = "PLAIN"
            /// The identity of the TLS client certificate (SASL EXTERNAL); needs `amqps`.
            case external = "EXTERNAL"
        }

        /// TLS settings for `amqps` connections.
        public struct TLS: Sendable, Hashable {
            /// PEM file of the certificate authorities trusted to sign the broker's certificate.
            public var caCertificateFile: String?
            /// PEM file of the client certificate chain, for brokers that ask for one.
            public var certificateFile: String?
            /// PEM file of the client certificate's private key.
            public var keyFile: String?
            /// Verify the broker's certificate chain and host name. On by default; turning it off
            /// exposes the connection to anyone on the path. librabbitmq 0.11 matches the host
            /// name against DNS names only: connect by name (`localhost`), not by IP address.
            public var verifyPeer: Bool = true
            /// The passphrase of an encrypted ``keyFile``. Never logged, never part of a
            /// description.
            public var keyPassword: String?
            /// The oldest TLS version to accept; TLS 1.2 unless lowered on purpose.
            public var minimumVersion: Version = .v1_2

            /// TLS protocol versions (librabbitmq 0.11 names none newer than 1.2; a newer
            /// version is still negotiated when both sides support it).
            public enum Version: Sendable, Hashable {
                case v1_0, v1_1, v1_2
            }

            /// TLS with the default settings: verification on, TLS 1.2 or newer.
            public init() {}
        }

        /// Host name or IP address of the broker (IPv6 without brackets).
        public var host: String = "localhost"
        /// TCP port; 5672 for `amqp`, 5671 for `amqps` by default.
        public var port: Int = 5672
        /// The user name (SASL PLAIN).
        public var user: String = "guest"
        /// The password (SASL PLAIN). Never logged, never part of an error or description.
        public var password: String = "guest"
        /// The virtual host; `"/"` is RabbitMQ's default.
        public var virtualHost: String = "/"
        /// TLS settings; `nil` connects over plain TCP.
        public var tls: TLS?
        /// The SASL mechanism.
        public var authMechanism: AuthMechanism = .plain
        /// Heartbeat interval in seconds to ask for; the broker may lower it. `0` turns heartbeats
        /// off, after which a dead peer is only noticed when the OS gives up on the socket.
        public var heartbeat: UInt16 = 60
        /// Largest frame to ask for, in bytes (at least 4096). Bigger bodies are split into frames.
        public var frameMax: UInt32 = 131_072
        /// Most channels to ask for; `0` takes the broker's limit (2047 on RabbitMQ).
        public var channelMax: UInt16 = 0
        /// Deadline for TCP connect, TLS handshake and AMQP login together.
        public var connectionTimeout: Duration = .seconds(30)
        /// Deadline for one synchronous AMQP method (declare, bind, open, ...). When it passes the
        /// channel's state is unknown, so the whole connection is closed with a timeout error.
        public var rpcTimeout: Duration = .seconds(60)
        /// How long ``AMQPConnection/close()`` waits for the broker's `close-ok` before it drops
        /// the socket anyway.
        public var closeTimeout: Duration = .seconds(10)
        /// A name for this connection, shown in the RabbitMQ management UI and `rabbitmqctl`.
        public var connectionName: String?
        /// How long a publish waits while the broker blocks the connection (`connection.blocked`,
        /// sent during a memory or disk alarm) before it fails with
        /// ``AMQPError/Code/blockedTimeout``.
        public var blockedPublishTimeout: Duration = .seconds(60)
        /// Called when the broker blocks the connection's publishers, with its reason (e.g.
        /// `low on memory`). Runs on the connection's thread: return quickly.
        public var onBlocked: (@Sendable (String) -> Void)?
        /// Called when the broker unblocks the connection. Runs on the connection's thread.
        public var onUnblocked: (@Sendable () -> Void)?
        /// The largest message body a publish accepts, in bytes; a larger one fails with
        /// ``AMQPError/Code/invalidArgument`` before anything is sent. The default is RabbitMQ's
        /// own default `max_message_size` (128 MiB), beyond which the broker would close the
        /// channel.
        public var maximumMessageSize = 134_217_728
        /// The prefetch a consumer with manual acknowledgement gets when its channel never set
        /// one with ``AMQPChannel/basicQos(prefetchCount:prefetchSize:global:)``: the most
        /// unacknowledged deliveries the broker sends it, and so the most its sequence holds.
        /// `nil` sets none: the broker then sends the whole queue at once, and what the loop has
        /// not read yet waits in memory. 250 by default, as Spring AMQP's.
        public var defaultPrefetch: UInt16? = 250
        /// Other nodes to connect to (a cluster's): opening and recovery try ``host``:``port``
        /// first, then these in turn.
        public var alternateEndpoints: [Endpoint] = []
        /// What happens when the connection is lost: by default it reconnects and re-creates its
        /// channels, topology and consumers (see ``Recovery``).
        public var recovery = Recovery()

        /// Creates a configuration for the broker on `host`, logging in as guest to vhost `/`.
        public init(host: String = "localhost", port: Int = 5672) {
            self.host = host
            self.port = port
        }

        /// Creates a configuration from an AMQP URI, as RabbitMQ documents it:
        /// `amqp[s]://user:password@host:port/vhost?heartbeat=30&connection_timeout=5000`.
        ///
        /// - User, password and vhost are percent-decoded; write the default vhost `/` as `%2F`.
        ///   `amqp://host` means vhost `/`, `amqp://host/` the empty vhost.
        /// - IPv6 hosts go in brackets: `amqp://[::1]:5672`.
        /// - Query parameters: `heartbeat` (seconds), `frame_max` (bytes), `channel_max`,
        ///   `connection_timeout` (milliseconds), `auth_mechanism` (`plain` or `external`), and for
        ///   `amqps`: `cacertfile`, `certfile`, `keyfile`, `verify` (`verify_peer` or
        ///   `verify_none`), `server_name_indication` (must name the host: librabbitmq sends the
        ///   host as the TLS server name).
        ///
        /// - Throws: ``AMQPError`` with code ``AMQPError/Code/invalidArgument`` naming the part of
        ///   the URI that is wrong. The password never appears in the error.
        public init(url: String) throws {
            self = try AMQPURIParser.parse(url)
        }

        /// The URI for this configuration with the password masked, for logs.
        public var redactedURL: String {
            let scheme = tls == nil ? "amqp" : "amqps"
            let hostPart = host.contains(":") ? "[\(host)]" : host
            return "\(scheme)://\(user):***@\(hostPart):\(port)/\(AMQPURIParser.percentEncode(virtualHost))"
        }
    }
}

extension AMQPConnection.Configuration: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The endpoint, user and settings, with the password masked (``redactedURL``).
    public var description: String {
        var text = "AMQPConnection.Configuration(\(redactedURL)"
        if !alternateEndpoints.isEmpty { text += ", alternates: \(alternateEndpoints)" }
        if let connectionName { text += ", name: \(connectionName)" }
        if let tls { text += ", \(tls)" }
        return text + ", heartbeat: \(heartbeat)s, recovery: \(recovery.isEnabled ? "on" : "off"))"
    }

    public var debugDescription: String { description }

    /// What `dump` and debuggers show: the description, so the password stays hidden.
    public var customMirror: Mirror { Mirror(self, children: ["description": description]) }
}

extension AMQPConnection.Configuration.TLS: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The files and settings, with the key passphrase masked.
    public var description: String {
        "TLS(ca: \(caCertificateFile ?? "none"), certificate: \(certificateFile ?? "none"), key: \(keyFile ?? "none")"
            + "\(keyPassword == nil ? "" : " (passphrase ***)"), verify: \(verifyPeer), minimum: \(minimumVersion))"
    }

    public var debugDescription: String { description }

    public var customMirror: Mirror { Mirror(self, children: ["description": description]) }
}
