"""JSON-lines sink: one public event per line, fsynced, in a 0600 file (it names people); raises on failure."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from stream.records import Event


class JsonlSink:
    name = "jsonl"
    max_concurrency = 1  # one writer: lines stay whole and in order

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600))

    def send(self, e: Event) -> None:
        with self._lock, open(self.path, "a") as fh:
            fh.write(json.dumps(e.public()) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
