"""ZeroMQ PUB sink: ``[b"alert", <public event JSON>]`` for other programs to subscribe to."""
from __future__ import annotations

import json

import zmq

from stream.records import Event

TOPIC = b"alert"


class ZmqPubSink:
    def __init__(self, ctx: zmq.Context, endpoint: str) -> None:
        self.sock = ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)

    def send(self, e: Event) -> None:
        self.sock.send_multipart([TOPIC, json.dumps(e.public()).encode()], flags=zmq.NOBLOCK)
