#!/usr/bin/env python3
"""The other side of the interoperability test: pika, an independent AMQP client.

  pika_interop.py publish QUEUE   publishes MESSAGES to QUEUE
  pika_interop.py verify QUEUE    reads len(MESSAGES) messages from QUEUE (forwarded by the Swift
                                  client) and checks that pika reads each as it published it
  pika_interop.py read QUEUE      reads the messages the Swift client published (SWIFT_MESSAGES)
                                  and checks the values pika decodes

The broker is AMQP_URL; HEADERS_SORTED=1 says it is RabbitMQ 4, which delivers headers ordered by
key. Exits 1 and prints every difference on failure.
"""
import datetime
import decimal
import os
import sys

import pika

MESSAGES = [
    (b'{"orderId":"ord-1"}', pika.BasicProperties(
        content_type="application/json", content_encoding="utf-8", delivery_mode=2, priority=3,
        correlation_id="corr-1", reply_to="replies", expiration="600000", message_id="msg-1",
        timestamp=1790000000, type="OrderCreated", app_id="pika", cluster_id="c1",
        headers={
            "zeta": "first key written", "alpha": "second", "int": 7, "big": 1 << 40, "negative": -5,
            "bool": True, "none": None, "bytes": b"\x00\xff\xc3",
            "decimal": decimal.Decimal("-123.45"), "when": datetime.datetime(2026, 12, 1, 12, 30, 5),
            "unicode": "caf\u00e9 \u2603 \U0001F600", "empty": "",
            "nested": {"list": [1, "two", {"deep": [False, None]}], "table": {"b": 2, "a": 1}},
        })),
    (b"", pika.BasicProperties()),
    (bytes(range(256)), pika.BasicProperties(headers={"x-death-like": [{"count": 1, "queue": "q"}]})),
]

# What the Swift client publishes in the `read` step (see InteropTests.swift), as pika decodes it.
# pika 1.2 misreads some types itself (b and B swapped, l as unsigned, f and d truncated to
# integers), so those are left out here; the Swift side checks them against RabbitMQ.
SWIFT_MESSAGES = [
    {
        "properties": {"content_type": "text/plain", "message_id": "from-swift", "timestamp": 1790000001,
                       "delivery_mode": 2, "type": "Ping"},
        "headers": {"string": "h\u00e9llo", "int16": -1600, "uint16": 60000, "int32": -320000,
                    "uint32": 4000000000, "int64": 64000000000, "decimal": decimal.Decimal("-123.45"),
                    "bool": True, "void": None, "bytes": b"\x00\x01\xff",
                    "timestamp": datetime.datetime(2026, 9, 21, 14, 13, 20), "table": {"k": "v", "list": [1, "two"]}},
        "header_order": ["string", "int16", "uint16", "int32", "uint32", "int64", "decimal", "bool", "void", "bytes",
                         "timestamp", "table"],
        "body": b"ping",
    },
]

PROPERTY_NAMES = ["content_type", "content_encoding", "headers", "delivery_mode", "priority", "correlation_id",
                  "reply_to", "expiration", "message_id", "timestamp", "type", "user_id", "app_id", "cluster_id"]


SORTED = os.environ.get("HEADERS_SORTED") == "1"


def delivered_order(keys):
    return sorted(keys) if SORTED else list(keys)


def connect():
    return pika.BlockingConnection(pika.URLParameters(os.environ["AMQP_URL"]))


def get(channel, queue):
    for _ in range(600):
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is not None:
            return properties, body
        connect.sleep(0.05)
    raise SystemExit(f"no message in {queue} within 30 s")


def main():
    mode, queue = sys.argv[1], sys.argv[2]
    connection = connect()
    connect.sleep = connection.sleep
    channel = connection.channel()
    problems = []
    if mode == "publish":
        channel.confirm_delivery()
        for body, properties in MESSAGES:
            channel.basic_publish("", queue, body, properties)
    elif mode == "verify":
        for index, (body, sent) in enumerate(MESSAGES):
            received, received_body = get(channel, queue)
            if received_body != body:
                problems.append(f"message {index}: body {received_body!r} != {body!r}")
            for name in PROPERTY_NAMES:
                if getattr(received, name) != getattr(sent, name):
                    problems.append(f"message {index}: {name} {getattr(received, name)!r} != {getattr(sent, name)!r}")
            if sent.headers and list(received.headers or {}) != delivered_order(sent.headers):
                problems.append(f"message {index}: header order {list(received.headers)} != {delivered_order(sent.headers)}")
    elif mode == "read":
        for index, expected in enumerate(SWIFT_MESSAGES):
            received, body = get(channel, queue)
            if body != expected["body"]:
                problems.append(f"swift message {index}: body {body!r}")
            for name, value in expected["properties"].items():
                if getattr(received, name) != value:
                    problems.append(f"swift message {index}: {name} {getattr(received, name)!r} != {value!r}")
            headers = received.headers or {}
            for name, value in expected["headers"].items():
                if headers.get(name) != value or not isinstance(headers.get(name), type(value)):
                    problems.append(f"swift message {index}: header {name} {headers.get(name)!r} != {value!r}")
            if list(headers) != delivered_order(expected["header_order"]):
                problems.append(f"swift message {index}: header order {list(headers)}")
    else:
        raise SystemExit(f"unknown mode {mode}")
    connection.close()
    if problems:
        print("\n".join(problems))
        sys.exit(1)
    print(f"{mode}: ok")


if __name__ == "__main__":
    main()
