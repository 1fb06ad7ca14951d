"""Synthetic test/demo clips: real face photos moving over a background at known times.

Used by ``facewatch demo`` (astronaut photo from scikit-image, public domain) and the tests, so the
expected answer (who appears when) is known exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass
class Appearance:
    face: np.ndarray  # BGR crop of a head (some margin around the face)
    start_s: float
    end_s: float
    height: int = 220  # rendered height in pixels


def astronaut_head() -> np.ndarray:
    from skimage import data

    img = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    return img[20:230, 140:320].copy()  # the face at ~(178..273, 57..177) with margin


def render_clip(path: Path, appearances: list[Appearance], *, size=(1280, 720), fps: float = 25.0,
                duration_s: float = 6.0, codec: str = "mp4v") -> Path:
    """Write a clip where each face moves left to right during its interval over a textured background."""
    w, h = size
    rng = np.random.default_rng(0)
    bg = cv2.GaussianBlur(rng.integers(40, 200, (h // 8, w // 8, 3), dtype=np.uint8), (5, 5), 0)
    bg = cv2.resize(bg, (w, h), interpolation=cv2.INTER_CUBIC)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path} with codec {codec}")
    n = int(round(duration_s * fps))
    for i in range(n):
        t = i / fps
        frame = bg.copy()
        for k, a in enumerate(appearances):
            if not (a.start_s <= t < a.end_s):
                continue
            face = cv2.resize(a.face, (int(a.face.shape[1] * a.height / a.face.shape[0]), a.height))
            fh, fw = face.shape[:2]
            p = (t - a.start_s) / max(a.end_s - a.start_s, 1e-6)
            x = int(40 + p * (w - fw - 80))
            y = int((h - fh) / 2 + (k % 2) * 0.2 * h - 0.1 * h)
            y = max(0, min(h - fh, y))
            frame[y : y + fh, x : x + fw] = face
        writer.write(frame)
    writer.release()
    return path
