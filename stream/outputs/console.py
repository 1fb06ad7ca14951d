"""Console sink: one line per alert and per camera status change on stdout, for an operator's terminal."""
from __future__ import annotations

from stream.records import Event


class ConsoleSink:
    def send(self, e: Event) -> None:
        print(e.console_line(), flush=True)

    def status(self, camera: str, online: bool, detail: str) -> None:
        print(f"CAMERA {camera} {'ONLINE' if online else 'OFFLINE'}: {detail}", flush=True)
