"""IoU tracker: gives each face a track id that persists across consecutive frames of one camera.

Greedy matching on IoU, with each track's box moved along its own velocity to the new frame's time, costs
microseconds and is enough for faces; a track ends after ``max_age_s`` without a match. The velocity
matters when frames are far apart: under overload the detector serves each camera less often, and a
walking face then moves more than its width between processed frames.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from engines.detections import iou_matrix


@dataclass
class _Track:
    tid: int
    box: np.ndarray
    last_seen: float
    start: float
    velocity: np.ndarray | None = None  # px/s of the box centre (x, y), once seen twice

    def predicted(self, t: float) -> np.ndarray:
        if self.velocity is None:
            return np.asarray(self.box, np.float64)
        return np.asarray(self.box, np.float64) + np.tile(self.velocity * (t - self.last_seen), 2)

    def moved_to(self, box: np.ndarray, t: float) -> None:
        dt = t - self.last_seen
        if dt > 1e-3:
            v = ((box[:2] + box[2:]) - (self.box[:2] + self.box[2:])) / 2 / dt
            self.velocity = v if self.velocity is None else 0.5 * self.velocity + 0.5 * v
        self.box, self.last_seen = box, t


def expand(boxes: np.ndarray, factor: float) -> np.ndarray:
    """Boxes scaled about their centres: overlap of expanded boxes tolerates fast motion at low fps."""
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) * factor / 2
    return np.hstack([c - half, c + half])


class IouTracker:
    """Per-camera tracks. Ids start from the wall clock in ms so a restarted stage never reuses one.

    Matching uses the IoU of boxes expanded 2x: at 5-8 processed fps a walking person's face can move
    more than its own width between frames, where plain IoU would start a new track every frame. A track
    seen once has no velocity yet, so its expansion grows with the time since (up to 4x): under overload
    a camera may be served only every 0.4 s, and the second sighting must still join the first.
    """

    def __init__(self, iou_min: float = 0.25, max_age_s: float = 2.0, expand_factor: float = 2.0) -> None:
        self.expand_factor = expand_factor
        self.iou_min, self.max_age_s = iou_min, max_age_s
        self.tracks: dict[str, list[_Track]] = {}
        self._next = int(time.time() * 1000)

    def update(self, camera: str, boxes: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Track ids and track start times for ``boxes`` seen at time ``t``."""
        live = [tr for tr in self.tracks.get(camera, []) if t - tr.last_seen <= self.max_age_s]
        ids = np.zeros(len(boxes), np.int64)
        starts = np.zeros(len(boxes), np.float64)
        new = np.asarray(boxes, np.float64).reshape(-1, 4)
        iou = np.zeros((len(new), len(live)))
        for j, tr in enumerate(live):  # a track without a velocity yet gets a search area that grows with the gap
            f = self.expand_factor if tr.velocity is not None else min(4.0, self.expand_factor + 4.0 * (t - tr.last_seen))
            iou[:, j] = iou_matrix(expand(new, f), expand(tr.predicted(t)[None], f))[:, 0]
        taken: set[int] = set()
        for flat in np.argsort(-iou, axis=None):
            i, j = np.unravel_index(flat, iou.shape)
            if iou[i, j] < self.iou_min:
                break
            if ids[i] or j in taken:
                continue
            ids[i], starts[i] = live[j].tid, live[j].start
            live[j].moved_to(np.asarray(boxes[i], np.float64), t)
            taken.add(int(j))
        for i in np.flatnonzero(ids == 0):
            self._next += 1
            live.append(_Track(self._next, np.asarray(boxes[i], np.float64), t, t))
            ids[i], starts[i] = self._next, t
        self.tracks[camera] = live
        return ids, starts
