"""What a running pipeline shares with the HTTP server through files: camera state and each camera's latest frame.

Why files: the HTTP server may run inside ``facewatch run`` or as its own ``facewatch serve`` beside it (even
after ``run`` has stopped, to review events); a directory both can read needs no extra socket, and works the
same in both cases. The supervisor rewrites ``cameras.json`` about once a second, each capture stage rewrites
``<camera>.jpg`` every ``live.frame_interval_s``. Every write is atomic (a reader never sees half a file) and
owner-only (frames show people). ``cameras.json`` says when it was written, so a reader can tell a stopped
pipeline (stale state) from a live one.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

from engines.files import atomic_write_bytes

CAMERAS_FILE = "cameras.json"
MAX_FRAME_WIDTH = 960  # latest frames are previews: smaller files, cheaper to encode
STALE_AFTER_S = 10.0  # cameras.json older than this: the pipeline is not running (or stuck)


class LiveDir:
    """The live-state directory (``live.dir`` under ``data_dir``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def ensure(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)

    def frame_path(self, camera: str) -> Path:
        """Where ``camera``'s latest frame is; the name is checked by the caller against the configured cameras."""
        return self.path / f"{camera}.jpg"

    def write_frame(self, camera: str, image_bgr: np.ndarray) -> None:
        h, w = image_bgr.shape[:2]
        if w > MAX_FRAME_WIDTH:
            image_bgr = cv2.resize(image_bgr, (MAX_FRAME_WIDTH, round(h * MAX_FRAME_WIDTH / w)), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, 80])
        if ok:
            atomic_write_bytes(self.frame_path(camera), buf.tobytes(), mode=0o600)

    def write_cameras(self, cameras: dict[str, dict]) -> None:
        body = json.dumps({"written": time.time(), "cameras": cameras}).encode()
        atomic_write_bytes(self.path / CAMERAS_FILE, body, mode=0o600)

    def read_cameras(self) -> tuple[dict[str, dict], float | None]:
        """(camera -> state, when written); ({}, None) when no pipeline has written it (or it is unreadable)."""
        try:
            data = json.loads((self.path / CAMERAS_FILE).read_text())
            return dict(data["cameras"]), float(data["written"])
        except (OSError, ValueError, KeyError, TypeError):
            return {}, None


class Rates:
    """Per-second rates from monotonically growing counters (a counter that went back, e.g. after a stage
    restart, restarts its rate instead of going negative)."""

    def __init__(self, smoothing: float = 0.5) -> None:
        self.smoothing = smoothing
        self.last: dict[str, tuple[float, float]] = {}
        self.rate: dict[str, float] = {}

    def update(self, key: str, value: float, now: float) -> float | None:
        prev = self.last.get(key)
        self.last[key] = (value, now)
        if prev is None or now <= prev[1] or value < prev[0]:
            return self.rate.get(key)
        r = (value - prev[0]) / (now - prev[1])
        old = self.rate.get(key)
        self.rate[key] = r if old is None else self.smoothing * old + (1 - self.smoothing) * r
        return self.rate[key]
