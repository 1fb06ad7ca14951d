"""Console sink: one line per alert and per camera status change on stdout, for an operator's terminal.

With ``as_json`` (``facewatch run --json``) each line is one JSON object instead, ``{"type": "alert", ...}`` or
``{"type": "camera", ...}``, for a program reading the terminal.
"""
from __future__ import annotations

import json
import time

from stream.records import Event


class ConsoleSink:
    def __init__(self, as_json: bool = False) -> None:
        self.as_json = as_json

    def send(self, e: Event) -> None:
        print(json.dumps({"type": "alert", **e.public()}) if self.as_json else e.console_line(), flush=True)

    def status(self, camera: str, online: bool, detail: str) -> None:
        if self.as_json:
            print(json.dumps({"type": "camera", "camera": camera, "online": online, "detail": detail, "ts": time.time()}),
                  flush=True)
        else:
            print(f"CAMERA {camera} {'ONLINE' if online else 'OFFLINE'}: {detail}", flush=True)
