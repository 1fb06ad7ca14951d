"""IoU tracker: gives each face a track id that persists across consecutive frames of one camera.

Greedy matching on IoU, with each track's box moved along its own velocity to the new frame's time, costs
microseconds and is enough for faces; a track ends after ``max_age_s`` without a match. The velocity
matters when frames are far apart: under overload the detector serves each camera less often, and a
walking face then moves more than its width between processed frames.

``SceneCuts`` decides when *every* track of a camera must end: at a hard cut, when the clock goes backwards
(a looping file, a restarted camera) or after a gap. Why: the match stage votes once per track, so a track
carried across a cut means a person who appears again after it is never identified (or alerted) again.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import cv2
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

    def __init__(self, max_age_s: float, iou_min: float = 0.25, expand_factor: float = 2.0) -> None:
        """``max_age_s``: ``tracking.max_gap_s`` of the config (its one default lives there)."""
        self.expand_factor = expand_factor
        self.iou_min, self.max_age_s = iou_min, max_age_s
        self.tracks: dict[str, list[_Track]] = {}
        self._next = int(time.time() * 1000)

    def end_camera(self, camera: str) -> int:
        """End every track of ``camera`` (a scene cut): the next face seen there starts a new track. Returns how
        many tracks ended."""
        return len(self.tracks.pop(camera, []))

    def predicted(self, camera: str, t: float) -> np.ndarray:
        """[K, 4] boxes of the camera's live tracks moved along their velocities to ``t``: where motion gating
        re-detects them, and what carries them between detections."""
        live = [tr for tr in self.tracks.get(camera, []) if t - tr.last_seen <= self.max_age_s]
        return np.array([tr.predicted(t) for tr in live], np.float64).reshape(-1, 4)

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


ResetReason = Literal["cut", "backwards", "gap"]


@dataclass
class _Seen:
    t: float
    source_t: float | None
    hist: np.ndarray


class SceneCuts:
    """Per camera, whether a processed frame starts a new scene, so that every track of the camera must end.

    A new scene is, relative to the camera's previous processed frame:

    - ``"backwards"``: its time ``t`` (video time in ``scan``, capture time live) or its source's own clock
      ``source_t`` (the stream position of a live source) went backwards: a looping file, a restarted camera;
    - ``"gap"``: more than ``max_gap_s`` passed: whoever is on screen now may be someone else;
    - ``"cut"``: the Bhattacharyya distance between small hue/saturation histograms of a ``THUMB``-sized
      thumbnail is above ``cut_threshold``. A face moving over the same background changes a few percent of the
      pixels and stays well below; a different scene changes most of them; a change of lighting changes little.

    Pure (no sockets, no clock of its own), so it is unit-tested with synthetic frames.
    """

    THUMB = (64, 36)
    HUE_BINS = 16
    SAT_BINS = 8

    def __init__(self, cut_threshold: float, max_gap_s: float) -> None:
        self.cut_threshold, self.max_gap_s = cut_threshold, max_gap_s
        self.last: dict[str, _Seen] = {}

    @classmethod
    def histogram(cls, image: np.ndarray) -> np.ndarray:
        """The colour histogram of a frame's thumbnail (the thumbnail makes it cheap and ignores noise)."""
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        w, h = cls.THUMB  # every few pixels first: area-averaging a whole 1080p frame costs ~5 ms, this ~0.5 ms
        step = max(1, min(image.shape[0] // (h * 4), image.shape[1] // (w * 4)))
        thumb = cv2.resize(np.ascontiguousarray(image[::step, ::step, :3]), cls.THUMB, interpolation=cv2.INTER_AREA)
        # Hue and saturation only: a change of exposure or lighting (lamps on, a cloud, auto-gain) scales the
        # brightness and would otherwise look like a cut; measured on skimage photos, brightness +30 or x0.6
        # gives 0.04-0.29 here (0.40-0.66 on a BGR histogram) while two different scenes give 0.63-0.68.
        hsv = cv2.cvtColor(thumb, cv2.COLOR_BGR2HSV)
        return cv2.calcHist([hsv], [0, 1], None, [cls.HUE_BINS, cls.SAT_BINS], [0, 180, 0, 256])

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """Bhattacharyya distance of two frames' histograms: 0 = same colours, 1 = nothing in common."""
        return float(cv2.compareHist(self.histogram(a), self.histogram(b), cv2.HISTCMP_BHATTACHARYYA))

    def check(self, camera: str, image: np.ndarray, t: float, source_t: float | None = None) -> ResetReason | None:
        """Why the tracks of ``camera`` must end before this frame, or None. Remembers the frame as the
        camera's previous one either way."""
        hist = self.histogram(image)
        prev = self.last.get(camera)
        self.last[camera] = _Seen(t, source_t, hist)
        if prev is None:
            return None
        if t < prev.t or (source_t is not None and prev.source_t is not None and source_t < prev.source_t):
            return "backwards"
        if t - prev.t > self.max_gap_s:
            return "gap"
        if cv2.compareHist(prev.hist, hist, cv2.HISTCMP_BHATTACHARYYA) > self.cut_threshold:
            return "cut"
        return None

    def forget(self, camera: str) -> None:
        """The camera's source ended (end of a scanned file): its next frame has nothing to compare with."""
        self.last.pop(camera, None)
