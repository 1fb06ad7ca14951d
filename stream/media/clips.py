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


# ------------------------------------------------------------------------------------ surveillance scenes
@dataclass
class Actor:
    """A head that follows ``path``: keyframes (t s, x, y) of its centre as shares of the frame, linear in between,
    visible from the first keyframe's time to the last's. Two keyframes at one place = a pause (standing still)."""

    face: np.ndarray  # BGR head crop
    height: int  # rendered height in pixels
    path: list[tuple[float, float, float]]

    @property
    def start_s(self) -> float:
        return self.path[0][0]

    @property
    def end_s(self) -> float:
        return self.path[-1][0]

    def box(self, t: float, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
        """(x1, y1, x2, y2) in pixels of the head at ``t`` in a frame of ``size`` (w, h), None when not visible."""
        if not (self.start_s <= t < self.end_s):
            return None
        ts = [p[0] for p in self.path]
        cx = float(np.interp(t, ts, [p[1] for p in self.path])) * size[0]
        cy = float(np.interp(t, ts, [p[2] for p in self.path])) * size[1]
        fw = int(self.face.shape[1] * self.height / self.face.shape[0])
        x1 = int(round(min(max(cx - fw / 2, 0), size[0] - fw)))
        y1 = int(round(min(max(cy - self.height / 2, 0), size[1] - self.height)))
        return x1, y1, x1 + fw, y1 + self.height


def render_scene(path: Path, actors: list[Actor], *, size=(1280, 720), fps: float = 25.0, duration_s: float = 30.0,
                 noise_sigma: float = 3.0, lighting: list[tuple[float, float]] = (), codec: str = "mp4v",
                 seed: int = 0) -> Path:
    """A still-camera clip: a fixed room-like background, sensor noise on every frame (Gaussian, ``noise_sigma``
    grey levels), global lighting changes (``lighting``: (t, gain) steps, each reached over 0.3 s) and ``actors``
    walking, pausing and standing still. What the motion gate must cope with: nothing moving for long stretches,
    noise and light that are not motion, people that stop moving."""
    w, h = size
    rng = np.random.default_rng(seed)
    bg = cv2.GaussianBlur(rng.integers(60, 190, (h // 16, w // 16, 3), dtype=np.uint8), (3, 3), 0)
    bg = cv2.resize(bg, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    for _ in range(6):  # furniture: flat rectangles with edges, so the room has structure
        x, y = int(rng.integers(0, w - w // 5)), int(rng.integers(h // 3, h - h // 6))
        bg[y : y + h // 6, x : x + w // 5] = rng.integers(30, 220, 3)
    noise = [rng.normal(0, noise_sigma, (h, w, 1)).astype(np.int16) for _ in range(8)]  # a bank, cycled
    knots_t, knots_g, level = [0.0], [1.0], 1.0
    for ts, g in sorted(lighting):
        knots_t += [ts, ts + 0.3]
        knots_g += [level, g]
        level = g
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path} with codec {codec}")
    heads = [cv2.resize(a.face, (int(a.face.shape[1] * a.height / a.face.shape[0]), a.height)) for a in actors]
    for i in range(int(round(duration_s * fps))):
        t = i / fps
        gain = float(np.interp(t, knots_t, knots_g))
        frame = bg.copy()
        for a, head in zip(actors, heads):
            b = a.box(t, size)
            if b is not None:
                frame[b[1] : b[3], b[0] : b[2]] = head
        frame = frame * gain + noise[i % len(noise)]
        writer.write(np.clip(frame, 0, 255).astype(np.uint8))
    writer.release()
    return path
