"""Webhook sink: POSTs one event's public JSON, optionally signed with HMAC-SHA256; raises when it did not land.

Retries, backoff, concurrency and giving up belong to the outbox (``stream.outputs.delivery``): this object
only makes one try and says whether the receiver took it (a 2xx answer).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import threading

import requests

from stream.config import WebhookConfig
from stream.records import Event

SIGNATURE_HEADER = "X-Facewatch-Signature"


class WebhookError(RuntimeError):
    """One try failed; the message is safe to log (no URL, which may carry a token; no body)."""


def _reason(exc: requests.RequestException) -> str:
    """A short cause without the URL: ``ConnectionError (Connection refused)``, ``ReadTimeout``."""
    m = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
    return f"{type(exc).__name__} ({m.group(1).strip()})" if m else type(exc).__name__


class WebhookSink:
    """Thread-safe: the delivery worker calls ``send`` from several threads (one HTTP session each)."""

    name = "webhook"

    def __init__(self, cfg: WebhookConfig) -> None:
        self.cfg = cfg
        self.secret = os.environ.get(cfg.secret_env, "").encode() if cfg.secret_env else b""
        self._local = threading.local()

    def sign(self, body: bytes) -> dict[str, str]:
        if not self.secret:
            return {}
        return {SIGNATURE_HEADER: "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()}

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def send(self, e: Event) -> None:
        body = json.dumps(e.public()).encode()
        headers = {"Content-Type": "application/json", **self.sign(body)}
        try:
            r = self._session().post(self.cfg.url, data=body, headers=headers, timeout=self.cfg.timeout_s)
        except requests.RequestException as exc:
            raise WebhookError(_reason(exc)) from None
        if not 200 <= r.status_code < 300:
            raise WebhookError(f"HTTP {r.status_code}")
