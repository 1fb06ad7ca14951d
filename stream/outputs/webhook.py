"""Webhook sink: POSTs each event's public JSON; retries with exponential backoff; optional HMAC-SHA256.

It runs on its own thread with a queue so a slow or dead receiver never slows the pipeline; its state per
event is kept in the event store, and pending deliveries are retried after a restart.
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

from stream.config import DeliveryConfig, WebhookConfig
from stream.records import Event
from stream.store.events import EventStore

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Facewatch-Signature"


class WebhookSink(threading.Thread):
    def __init__(self, cfg: WebhookConfig, delivery: DeliveryConfig, store_path: Path) -> None:
        super().__init__(daemon=True)
        self.cfg, self.delivery = cfg, delivery
        self.store_path = store_path
        self.q: queue.Queue[Event | None] = queue.Queue()
        self.secret = os.environ.get(cfg.secret_env, "").encode() if cfg.secret_env else b""
        self.session = requests.Session()

    def send(self, e: Event) -> None:
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
            assert e.id is not None, "events are stored before delivery"
            body = json.dumps(e.public()).encode()
            headers = {"Content-Type": "application/json", **self.sign(body)}
            delay = self.delivery.backoff_s
            for attempt in range(1, 6):
                try:
                    r = self.session.post(self.cfg.url, data=body, headers=headers, timeout=self.cfg.timeout_s)
                    if 200 <= r.status_code < 300:
                        store.set_webhook(e.id, "delivered", attempt)
                        break
                    why = f"HTTP {r.status_code}"
                except requests.RequestException as exc:
                    why = type(exc).__name__
                store.set_webhook(e.id, "pending", attempt)
                log.warning("webhook delivery of event %s failed (%s), attempt %d", e.id, why, attempt)
                time.sleep(delay)
                delay = min(delay * 2, self.delivery.max_backoff_s)
            else:
                store.set_webhook(e.id, "failed", 5)
        store.close()
