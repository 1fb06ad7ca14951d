"""ZeroMQ PUB sink: ``[b"alert", <public event JSON>]`` for other programs to subscribe to.

A PUB socket never waits for subscribers (no one listening = nothing sent, by design of PUB/SUB), so a try only
fails when the socket itself does. ZeroMQ sockets are not thread-safe: one send at a time, under a lock.
"""
from __future__ import annotations

import json
import threading

import zmq

from stream.records import Event

TOPIC = b"alert"


class ZmqPubSink:
    name = "zmq_pub"
    max_concurrency = 1

    def __init__(self, ctx: zmq.Context, endpoint: str) -> None:
        self._lock = threading.Lock()
        self.sock = ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)

    def send(self, e: Event) -> None:
        with self._lock:
            self.sock.send_multipart([TOPIC, json.dumps(e.public()).encode()], flags=zmq.NOBLOCK)
