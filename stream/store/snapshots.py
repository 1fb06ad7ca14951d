"""Face-chip and full-frame JPEGs of events, owner-only (they are biometric data), one folder per camera.

Why one writer for the live alert stage and ``scan --store``: both put events in the same store, so their
snapshots must sit under the same directory, named the same way, for the HTTP server to serve them (it
serves only files under this directory).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np

from engines.files import atomic_write_bytes


def write_jpeg(path: Path, image: np.ndarray, rgb: bool = False) -> bool:
    ok, buf = cv2.imencode(".jpg", image[:, :, ::-1] if rgb else image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if ok:
        atomic_write_bytes(path, buf.tobytes(), mode=0o600)
    return bool(ok)


class Snapshots:
    """The snapshot directory (``alerts.snapshots``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    def write(self, camera: str, ts: float, track_id: int, chip_bgr: np.ndarray | None,
              frame_bgr: np.ndarray | None) -> tuple[str | None, str | None]:
        """Write the face chip and the full frame; their paths (None for what was not given)."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(ts)) + f"-{int(ts * 1000) % 1000:03d}"
        folder = self.root / camera
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        chip_path = frame_path = None
        if chip_bgr is not None and write_jpeg(folder / f"{stamp}-{track_id}-face.jpg", chip_bgr):
            chip_path = str(folder / f"{stamp}-{track_id}-face.jpg")
        if frame_bgr is not None and write_jpeg(folder / f"{stamp}-{track_id}-frame.jpg", frame_bgr):
            frame_path = str(folder / f"{stamp}-{track_id}-frame.jpg")
        return chip_path, frame_path
