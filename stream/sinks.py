"""Alert deliveries: console line, JSON-lines file, webhook (retries, HMAC), ZeroMQ PUB.

The webhook runs on its own thread with a queue so a slow or dead receiver never slows the pipeline;
its state per event is kept in the event store, and pending deliveries are retried after a restart.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import queue
import threading
import time
from pathlib import Path

import requests
import zmq

from stream.config import WebhookConfig
from stream.events import EventStore

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Facewatch-Signature"


def public_event(e: dict) -> dict:
    """What leaves the machine: no images, only paths and numbers."""
    keys = ("id", "ts", "ts_capture", "camera", "kind", "identity", "score", "threshold", "track_id", "latency_ms",
            "box", "chip_path", "frame_path")
    return {k: e.get(k) for k in keys}


def console_line(e: dict) -> str:
    who = e["identity"] or "UNKNOWN face"
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["ts_capture"]))
    return (f"ALERT {e['kind']}: {who} on camera {e['camera']} at {when} score {e['score']:.4f} "
            f"(threshold {e['threshold']:.4f}) track {e['track_id']} latency {e['latency_ms']:.0f} ms "
            f"snapshot {e.get('frame_path') or '-'}")


class JsonlSink:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600))

    def send(self, e: dict) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps(public_event(e)) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


class ZmqPubSink:
    def __init__(self, ctx: zmq.Context, endpoint: str) -> None:
        self.sock = ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)

    def send(self, e: dict) -> None:
        self.sock.send_multipart([b"alert", json.dumps(public_event(e)).encode()], flags=zmq.NOBLOCK)


class WebhookSink(threading.Thread):
    """POSTs the JSON event; retries with exponential backoff; optional HMAC-SHA256 signature."""

    def __init__(self, cfg: WebhookConfig, store_path: Path) -> None:
        super().__init__(daemon=True)
        self.cfg = cfg
        self.store_path = store_path
        self.q: queue.Queue[dict | None] = queue.Queue()
        self.secret = os.environ.get(cfg.secret_env, "").encode() if cfg.secret_env else b""
        self.session = requests.Session()

    def submit(self, e: dict) -> None:
        self.q.put(e)

    def stop(self) -> None:
        self.q.put(None)

    def sign(self, body: bytes) -> dict:
        if not self.secret:
            return {}
        return {SIGNATURE_HEADER: "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()}

    def run(self) -> None:
        store = EventStore(self.store_path)  # own connection: sqlite objects stay in their thread
        for e in store.pending_webhooks():  # deliveries a previous run did not finish
            self.q.put(e)
        while True:
            e = self.q.get()
            if e is None:
                break
            body = json.dumps(public_event(e)).encode()
            headers = {"Content-Type": "application/json", **self.sign(body)}
            delay = self.cfg.backoff_s
            for attempt in range(1, self.cfg.retries + 2):
                try:
                    r = self.session.post(self.cfg.url, data=body, headers=headers, timeout=self.cfg.timeout_s)
                    if 200 <= r.status_code < 300:
                        store.set_webhook(e["id"], "delivered", attempt)
                        break
                    why = f"HTTP {r.status_code}"
                except requests.RequestException as exc:
                    why = type(exc).__name__
                store.set_webhook(e["id"], "pending", attempt)
                log.warning("webhook delivery of event %s failed (%s), attempt %d", e["id"], why, attempt)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
            else:
                store.set_webhook(e["id"], "failed", self.cfg.retries + 1)
        store.close()
