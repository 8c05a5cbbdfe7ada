/*
 * rabbitmq-bench-c: the benchmark contract's client written directly on rabbitmq-c, single
 * threaded and as lean as the library allows: the floor any wrapper of librabbitmq is measured
 * against. Same command line and JSON output as rabbitmq-bench (../shared/bench/CONTRACT.md).
 *
 * Build: cc -O2 -o rabbitmq-bench-c rabbitmq-bench-c.c $(pkg-config --cflags --libs librabbitmq libcjson)
 */
#if __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/tcp_socket.h>
#else
#include <amqp.h>
#include <amqp_tcp_socket.h>
#endif
#include <cjson/cJSON.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *workload;
    long count;
    long size;
    const char *url;
    double rate;
    int prefetch;
    long window;
} options_t;

static void die(const char *what) {
    fprintf(stderr, "rabbitmq-bench-c: %s\n", what);
    exit(1);
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint64_t now_nanoseconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static double cpu_seconds(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + (double)u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6;
}

static void check_reply(amqp_rpc_reply_t reply, const char *what) {
    if (reply.reply_type != AMQP_RESPONSE_NORMAL) die(what);
}

static void check_status(int status, const char *what) {
    if (status != AMQP_STATUS_OK) die(what);
}

/* Connects, logs in (no heartbeats) and opens channel 1. */
static amqp_connection_state_t connect_to(const char *url) {
    char buffer[1024];
    struct amqp_connection_info info;
    snprintf(buffer, sizeof buffer, "%s", url);
    if (amqp_parse_url(buffer, &info) != AMQP_STATUS_OK) die("bad --url");
    amqp_connection_state_t conn = amqp_new_connection();
    amqp_socket_t *socket = amqp_tcp_socket_new(conn);
    if (!socket || amqp_socket_open(socket, info.host, info.port) != AMQP_STATUS_OK) die("connect failed");
    check_reply(amqp_login(conn, info.vhost, 0, AMQP_DEFAULT_FRAME_SIZE, 0, AMQP_SASL_METHOD_PLAIN, info.user,
                           info.password), "login failed");
    amqp_channel_open(conn, 1);
    check_reply(amqp_get_rpc_reply(conn), "channel.open failed");
    return conn;
}

static uint32_t queue_count(amqp_connection_state_t conn, amqp_bytes_t queue) {
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(conn, 1, queue, 1, 0, 0, 0, amqp_empty_table);
    check_reply(amqp_get_rpc_reply(conn), "passive queue.declare failed");
    return ok->message_count;
}

/* Reads one frame; timeout NULL blocks. Returns 0 on timeout. */
static int next_frame(amqp_connection_state_t conn, amqp_frame_t *frame, struct timeval *timeout) {
    int status = amqp_simple_wait_frame_noblock(conn, frame, timeout);
    if (status == AMQP_STATUS_TIMEOUT) return 0;
    check_status(status, "reading a frame failed");
    return 1;
}

/* Confirm book-keeping: publishes sent and confirmed (acks with `multiple` honoured). */
typedef struct {
    uint64_t published;
    uint64_t confirmed;
    uint64_t nacked;
} confirms_t;

static void handle_confirm(amqp_frame_t *frame, confirms_t *c) {
    if (frame->frame_type != AMQP_FRAME_METHOD) return;
    if (frame->payload.method.id == AMQP_BASIC_ACK_METHOD) {
        amqp_basic_ack_t *ack = frame->payload.method.decoded;
        c->confirmed = ack->multiple ? ack->delivery_tag : c->confirmed + 1;
    } else if (frame->payload.method.id == AMQP_BASIC_NACK_METHOD) {
        amqp_basic_nack_t *nack = frame->payload.method.decoded;
        uint64_t upto = nack->multiple ? nack->delivery_tag : c->confirmed + 1;
        c->nacked += upto - c->confirmed;
        c->confirmed = upto;
    }
}

/* Publishes `count` bodies with a sliding window of unconfirmed messages; waits for all. */
static void publish_confirmed(amqp_connection_state_t conn, amqp_bytes_t exchange, amqp_bytes_t key,
                              long count, long window, amqp_bytes_t (*body)(long, void *), void *context,
                              amqp_basic_properties_t *properties) {
    confirms_t c = {0, 0, 0};
    amqp_frame_t frame;
    struct timeval zero = {0, 0};
    while (c.confirmed < (uint64_t)count) {
        while (c.published < (uint64_t)count && c.published - c.confirmed < (uint64_t)window) {
            check_status(amqp_basic_publish(conn, 1, exchange, key, 0, 0, properties, body((long)c.published, context)),
                         "publish failed");
            c.published++;
        }
        /* Block for the next confirm, then take whatever else is ready. */
        if (next_frame(conn, &frame, NULL)) handle_confirm(&frame, &c);
        while (next_frame(conn, &frame, &zero)) handle_confirm(&frame, &c);
    }
    if (c.nacked) die("the broker nacked messages");
}

static amqp_bytes_t fixed_body(long index, void *context) {
    (void)index;
    return *(amqp_bytes_t *)context;
}

/* Delivery assembly on one connection: returns 1 with the body when a whole message is in. */
typedef struct {
    uint64_t tag;
    size_t expected;
    size_t received;
    char *body;
    size_t capacity;
    int in_message;
} assembly_t;

static int assemble(amqp_frame_t *frame, assembly_t *a) {
    switch (frame->frame_type) {
    case AMQP_FRAME_METHOD:
        if (frame->payload.method.id == AMQP_BASIC_DELIVER_METHOD) {
            a->tag = ((amqp_basic_deliver_t *)frame->payload.method.decoded)->delivery_tag;
            a->in_message = 1;
            a->received = 0;
        }
        return 0;
    case AMQP_FRAME_HEADER:
        a->expected = (size_t)frame->payload.properties.body_size;
        if (a->expected > a->capacity) {
            a->capacity = a->expected;
            a->body = realloc(a->body, a->capacity);
        }
        return a->in_message && a->expected == 0;
    case AMQP_FRAME_BODY:
        memcpy(a->body + a->received, frame->payload.body_fragment.bytes, frame->payload.body_fragment.len);
        a->received += frame->payload.body_fragment.len;
        return a->in_message && a->received == a->expected;
    default:
        return 0;
    }
}

static int compare_u64(const void *x, const void *y) {
    uint64_t p = *(const uint64_t *)x, q = *(const uint64_t *)y;
    return p < q ? -1 : p > q;
}

static void print_result(const options_t *o, long messages, double seconds, double cpu, const char *extra) {
    printf("{\"client\":\"c-librabbitmq\",\"workload\":\"%s\",\"messages\":%ld,\"size\":%ld,\"seconds\":%.6f,"
           "\"cpu_seconds\":%.6f%s}\n", o->workload, messages, o->size, seconds, cpu, extra ? extra : "");
}

static void start_consumer(amqp_connection_state_t conn, amqp_bytes_t queue, int prefetch, int no_ack) {
    if (prefetch > 0) {
        amqp_basic_qos(conn, 1, 0, (uint16_t)prefetch, 0);
        check_reply(amqp_get_rpc_reply(conn), "basic.qos failed");
    }
    amqp_basic_consume(conn, 1, queue, amqp_empty_bytes, 0, no_ack, 0, amqp_empty_table);
    check_reply(amqp_get_rpc_reply(conn), "basic.consume failed");
}

/* W5: the contract's event, encoded with cJSON. */
static amqp_bytes_t encode_event(long i, void *context) {
    static char *last = NULL;
    (void)context;
    free(last);
    static const char *skus[] = {"SKU-100234", "SKU-200871", "SKU-993120"};
    static const double prices[] = {19.99, 5.25, 129.0};
    char text[64];
    cJSON *root = cJSON_CreateObject();
    snprintf(text, sizeof text, "ord-%010ld", i);
    cJSON_AddStringToObject(root, "orderId", text);
    snprintf(text, sizeof text, "cust-%06ld", i % 100000);
    cJSON_AddStringToObject(root, "customerId", text);
    cJSON *items = cJSON_AddArrayToObject(root, "items");
    double total = 0;
    for (int k = 0; k < 3; k++) {
        cJSON *item = cJSON_CreateObject();
        int qty = 1 + (int)((i + k) % 5);
        cJSON_AddStringToObject(item, "sku", skus[k]);
        cJSON_AddNumberToObject(item, "qty", qty);
        cJSON_AddNumberToObject(item, "price", prices[k]);
        cJSON_AddItemToArray(items, item);
        total += qty * prices[k];
    }
    cJSON_AddNumberToObject(root, "total", (double)((long)(total * 100 + 0.5)) / 100);
    snprintf(text, sizeof text, "2026-11-21T12:00:%02ld.%03ldZ", (i / 1000) % 60, i % 1000);
    cJSON_AddStringToObject(root, "createdAt", text);
    cJSON_AddStringToObject(root, "currency", "EUR");
    cJSON_AddStringToObject(root, "channel", "web");
    cJSON_AddStringToObject(root, "note", "benchmark order event");
    last = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    amqp_bytes_t bytes = {strlen(last), last};
    return bytes;
}

/* Decodes into a typed struct and checks it has three items. */
typedef struct {
    char order_id[32];
    int item_count;
    double total;
} order_t;

static int decode_event(const char *body, size_t length, order_t *order) {
    cJSON *root = cJSON_ParseWithLength(body, length);
    if (!root) return 0;
    cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "orderId");
    cJSON *items = cJSON_GetObjectItemCaseSensitive(root, "items");
    cJSON *total = cJSON_GetObjectItemCaseSensitive(root, "total");
    int ok = cJSON_IsString(id) && cJSON_IsArray(items) && cJSON_IsNumber(total);
    if (ok) {
        snprintf(order->order_id, sizeof order->order_id, "%s", id->valuestring);
        order->item_count = cJSON_GetArraySize(items);
        order->total = total->valuedouble;
    }
    cJSON_Delete(root);
    return ok && order->item_count == 3;
}

int main(int argc, char **argv) {
    options_t o = {NULL, 200000, 128, "amqp://guest:guest@127.0.0.1:5672/%2f", 2000, 500, 1000};
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--workload")) o.workload = argv[i + 1];
        else if (!strcmp(argv[i], "--count")) o.count = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--size")) o.size = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--url")) o.url = argv[i + 1];
        else if (!strcmp(argv[i], "--rate")) o.rate = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--prefetch")) o.prefetch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--window")) o.window = atol(argv[i + 1]);
        else die("unknown option");
    }
    if (!o.workload) die("--workload W1...W5");

    char queue_name[128];
    snprintf(queue_name, sizeof queue_name, "peerbench-c-librabbitmq-%s-%d", o.workload, (int)getpid());
    amqp_bytes_t queue = amqp_cstring_bytes(queue_name);
    amqp_connection_state_t conn = connect_to(o.url);
    amqp_queue_declare(conn, 1, queue, 0, 0, 0, 0, amqp_empty_table);
    check_reply(amqp_get_rpc_reply(conn), "queue.declare failed");

    char *payload = calloc(1, o.size > 8 ? (size_t)o.size : 8);
    memset(payload, 0x42, (size_t)o.size);
    amqp_bytes_t body = {(size_t)o.size, payload};
    amqp_basic_properties_t transient = {._flags = AMQP_BASIC_DELIVERY_MODE_FLAG, .delivery_mode = 1};
    char extra[256] = "";

    if (!strcmp(o.workload, "W1")) {
        double start = now_seconds(), cpu = cpu_seconds();
        for (long i = 0; i < o.count; i++)
            check_status(amqp_basic_publish(conn, 1, amqp_empty_bytes, queue, 0, 0, &transient, body), "publish failed");
        double seconds = now_seconds() - start, used = cpu_seconds() - cpu;
        uint32_t seen;
        while ((seen = queue_count(conn, queue)) < (uint32_t)o.count) usleep(1000);
        snprintf(extra, sizeof extra, ",\"seconds_queued\":%.6f,\"queued\":%u", now_seconds() - start, seen);
        print_result(&o, o.count, seconds, used, extra);
    } else if (!strcmp(o.workload, "W2")) {
        amqp_confirm_select(conn, 1);
        check_reply(amqp_get_rpc_reply(conn), "confirm.select failed");
        double start = now_seconds(), cpu = cpu_seconds();
        publish_confirmed(conn, amqp_empty_bytes, queue, o.count, o.window, fixed_body, &body, &transient);
        print_result(&o, o.count, now_seconds() - start, cpu_seconds() - cpu, ",\"confirm_mode\":\"window\"");
    } else if (!strcmp(o.workload, "W3")) {
        amqp_connection_state_t filler = connect_to(o.url);
        amqp_confirm_select(filler, 1);
        check_reply(amqp_get_rpc_reply(filler), "confirm.select failed");
        publish_confirmed(filler, amqp_empty_bytes, queue, o.count, 5000, fixed_body, &body, &transient);
        while (queue_count(conn, queue) < (uint32_t)o.count) usleep(1000);
        amqp_connection_close(filler, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(filler);

        double start = now_seconds(), cpu = cpu_seconds();
        start_consumer(conn, queue, o.prefetch, 0);
        assembly_t a = {0};
        amqp_frame_t frame;
        long received = 0;
        while (received < o.count) {
            next_frame(conn, &frame, NULL);
            if (assemble(&frame, &a)) {
                check_status(amqp_basic_ack(conn, 1, a.tag, 0), "ack failed");
                a.in_message = 0;
                received++;
            }
            amqp_maybe_release_buffers(conn);
        }
        print_result(&o, received, now_seconds() - start, cpu_seconds() - cpu, NULL);
        free(a.body);
    } else if (!strcmp(o.workload, "W4")) {
        amqp_connection_state_t consumer = connect_to(o.url);
        start_consumer(consumer, queue, 0, 1);
        uint64_t *samples = calloc((size_t)o.count, sizeof *samples);
        assembly_t a = {0};
        amqp_frame_t frame;
        long sent = 0, received = 0;
        double start = now_seconds(), cpu = cpu_seconds();
        while (received < o.count) {
            double due = start + sent / o.rate;
            if (sent < o.count && now_seconds() >= due) {
                uint64_t t = now_nanoseconds();
                memcpy(payload, &t, 8); /* little-endian on the machines we run on */
                check_status(amqp_basic_publish(conn, 1, amqp_empty_bytes, queue, 0, 0, &transient, body), "publish failed");
                sent++;
                continue;
            }
            /* Receive until the next publish is due. */
            if (!amqp_frames_enqueued(consumer) && !amqp_data_in_buffer(consumer)) {
                double wait = sent < o.count ? due - now_seconds() : 1.0;
                struct pollfd fd = {amqp_get_sockfd(consumer), POLLIN, 0};
                /* Round up so a sub-millisecond wait does not spin. */
                if (wait > 0 && poll(&fd, 1, (int)(wait * 1000) + 1) == 0) continue;
            }
            struct timeval zero = {0, 0};
            if (!next_frame(consumer, &frame, &zero)) continue;
            if (assemble(&frame, &a)) {
                uint64_t t0;
                memcpy(&t0, a.body, 8);
                samples[received++] = now_nanoseconds() - t0;
                a.in_message = 0;
            }
            amqp_maybe_release_buffers(consumer);
        }
        double seconds = now_seconds() - start, used = cpu_seconds() - cpu;
        qsort(samples, (size_t)o.count, sizeof *samples, compare_u64);
        snprintf(extra, sizeof extra, ",\"p50_us\":%llu,\"p99_us\":%llu,\"max_us\":%llu,\"rate\":%d",
                 (unsigned long long)(samples[o.count / 2] / 1000), (unsigned long long)(samples[o.count * 99 / 100] / 1000),
                 (unsigned long long)(samples[o.count - 1] / 1000), (int)o.rate);
        print_result(&o, received, seconds, used, extra);
        amqp_connection_close(consumer, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(consumer);
    } else if (!strcmp(o.workload, "W5")) {
        amqp_bytes_t exchange = amqp_cstring_bytes("orders");
        amqp_exchange_declare(conn, 1, exchange, amqp_cstring_bytes("topic"), 0, 0, 0, 0, amqp_empty_table);
        if (amqp_get_rpc_reply(conn).reply_type != AMQP_RESPONSE_NORMAL) {
            /* A durable `orders` exists already: reopen the channel the broker closed and route through it. */
            amqp_channel_close_ok_t close_ok;
            amqp_send_method(conn, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok);
            amqp_channel_open(conn, 1);
            check_reply(amqp_get_rpc_reply(conn), "channel.open failed");
        }
        amqp_queue_bind(conn, 1, queue, exchange, amqp_cstring_bytes("order.*"), amqp_empty_table);
        check_reply(amqp_get_rpc_reply(conn), "queue.bind failed");
        start_consumer(conn, queue, 500, 0);
        amqp_connection_state_t publisher = connect_to(o.url);
        amqp_confirm_select(publisher, 1);
        check_reply(amqp_get_rpc_reply(publisher), "confirm.select failed");
        amqp_basic_properties_t properties = {
            ._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_TYPE_FLAG,
            .content_type = amqp_cstring_bytes("application/json"), .delivery_mode = 1,
            .type = amqp_cstring_bytes("OrderCreated")};
        confirms_t c = {0, 0, 0};
        assembly_t a = {0};
        amqp_frame_t frame;
        struct timeval zero = {0, 0};
        long consumed = 0, bad = 0;
        double start = now_seconds(), cpu = cpu_seconds();
        while (consumed < o.count) {
            while (c.published < (uint64_t)o.count && c.published - c.confirmed < (uint64_t)o.window) {
                check_status(amqp_basic_publish(publisher, 1, exchange, amqp_cstring_bytes("order.created"), 0, 0,
                                                &properties, encode_event((long)c.published, NULL)), "publish failed");
                c.published++;
            }
            while (next_frame(publisher, &frame, &zero)) handle_confirm(&frame, &c);
            int progressed = 0;
            while (next_frame(conn, &frame, &zero)) {
                progressed = 1;
                if (assemble(&frame, &a)) {
                    order_t order;
                    if (!decode_event(a.body, a.received, &order)) bad++;
                    check_status(amqp_basic_ack(conn, 1, a.tag, 0), "ack failed");
                    a.in_message = 0;
                    consumed++;
                }
            }
            amqp_maybe_release_buffers(conn);
            amqp_maybe_release_buffers(publisher);
            if (!progressed && c.published - c.confirmed >= (uint64_t)o.window) {
                struct pollfd fds[2] = {{amqp_get_sockfd(conn), POLLIN, 0}, {amqp_get_sockfd(publisher), POLLIN, 0}};
                poll(fds, 2, 10);
            } else if (!progressed && c.published == (uint64_t)o.count) {
                struct pollfd fds[1] = {{amqp_get_sockfd(conn), POLLIN, 0}};
                poll(fds, 1, 10);
            }
        }
        snprintf(extra, sizeof extra, ",\"bad\":%ld", bad);
        print_result(&o, consumed, now_seconds() - start, cpu_seconds() - cpu, extra);
        amqp_connection_close(publisher, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(publisher);
    } else if (!strcmp(o.workload, "IDLE")) {
        /* A consumer waiting on an empty queue for --count milliseconds: what an open, idle
           connection costs. The blocking wait a C consumer would use: poll until data or the end. */
        start_consumer(conn, queue, o.prefetch, 0);
        double start = now_seconds(), cpu = cpu_seconds(), end = start + o.count / 1000.0;
        for (double left = end - start; left > 0; left = end - now_seconds()) {
            struct pollfd fd = {amqp_get_sockfd(conn), POLLIN, 0};
            if (poll(&fd, 1, (int)(left * 1000) + 1) > 0) die("IDLE: the broker sent something");
        }
        double seconds = now_seconds() - start, used = cpu_seconds() - cpu;
        snprintf(extra, sizeof extra, ",\"cpu_us_per_second\":%.3f", used / seconds * 1e6);
        print_result(&o, 0, seconds, used, extra);
    } else {
        die("--workload W1...W5, IDLE");
    }

    amqp_queue_delete(conn, 1, queue, 0, 0);
    amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
    free(payload);
    return 0;
}
