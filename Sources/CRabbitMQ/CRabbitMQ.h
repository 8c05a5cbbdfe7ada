// The C side of swift-rabbitmq: librabbitmq's headers, whichever layout is installed, and the
// few wrappers Swift needs to call it. Nothing here is public API of the Swift package.
#ifndef CRABBITMQ_H
#define CRABBITMQ_H

// rabbitmq-c 0.12 moved its headers under rabbitmq-c/ and kept the flat names as shims that
// emit #warning; 0.11 (Debian 12) has only the flat names. Prefer the new layout when present.
#if __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/framing.h>
#include <rabbitmq-c/tcp_socket.h>
#include <rabbitmq-c/ssl_socket.h>
#else
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <amqp_ssl_socket.h>
#endif

// amqp_login_with_properties is C-variadic (the SASL arguments follow the method), which Swift
// cannot call. These fixed-arity wrappers pass exactly the arguments each mechanism reads.

/// Logs in with SASL PLAIN.
static inline amqp_rpc_reply_t crmq_login_plain(amqp_connection_state_t state, const char *vhost,
                                                int channel_max, int frame_max, int heartbeat,
                                                const amqp_table_t *client_properties,
                                                const char *user, const char *password) {
    return amqp_login_with_properties(state, vhost, channel_max, frame_max, heartbeat,
                                      client_properties, AMQP_SASL_METHOD_PLAIN, user, password);
}

/// Logs in with SASL EXTERNAL (the identity comes from the TLS client certificate).
static inline amqp_rpc_reply_t crmq_login_external(amqp_connection_state_t state,
                                                   const char *vhost, int channel_max,
                                                   int frame_max, int heartbeat,
                                                   const amqp_table_t *client_properties,
                                                   const char *identity) {
    return amqp_login_with_properties(state, vhost, channel_max, frame_max, heartbeat,
                                      client_properties, AMQP_SASL_METHOD_EXTERNAL, identity);
}

#endif
