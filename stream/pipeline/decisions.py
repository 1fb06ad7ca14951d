"""The decisions that matter most, as small pure classes with no sockets, clocks or models inside.

Each stage loop only feeds them: the detect stage asks ``LiveBatchCut`` which frames to process, the embed
stage asks ``EmbeddingBudget`` which chips to embed, the match stage keeps a ``TrackVote`` per track, and
the alert stage (and ``scan``) ask ``AlertRules`` and ``Cooldown`` whether a decision becomes an alert.
Time is always passed in, so every rule is unit-tested at its edges (tests/test_decisions.py).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Literal, Protocol, Sequence

import numpy as np

from engines.aggregate import track_vector
from engines.face_model import crop_sharpness, exposure_problem

DecisionKind = Literal["watchlist", "unknown"]


#: How far the nose may sit off the eyes' midpoint (in inter-ocular distances, along the eye line) and how far
#: its height under the eyes may differ from the frontal template's share of the eye-to-mouth height, before a
#: look counts as fully turned (yaw) or tilted (pitch). Frontal ArcFace template: 0.00 and 0.49.
YAW_FULL = 0.5
PITCH_FULL = 0.25
FRONTAL_NOSE_SHARE = 0.49
#: A turned look costs at most a fifth of its quality: enough to rank a frontal look first among the chips of a
#: batch, not enough for ``EmbeddingBudget.keep_share`` (0.8) to refuse a person's turned looks on its own once a
#: frontal one was seen (the votes rule needs different looks).
FRONTAL_FLOOR = 0.8


def frontality(landmarks) -> np.ndarray:
    """How frontal each face is, in ``FRONTAL_FLOOR``..1, from its 5 landmarks [N, 5, 2] (eyes as seen, nose,
    mouth corners): 1 for a face looking at the camera, lower as it turns (yaw) or tilts (pitch). Measured in the
    eye-aligned frame, so an in-plane roll (which alignment undoes) costs nothing."""
    lm = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    eyes = (lm[:, 0] + lm[:, 1]) / 2
    v = lm[:, 1] - lm[:, 0]
    iod = np.maximum(np.linalg.norm(v, axis=1), 1e-6)
    ux, uy = v[:, 0] / iod, v[:, 1] / iod
    rel_nose = lm[:, 2] - eyes
    mouth = (lm[:, 3] + lm[:, 4]) / 2 - eyes
    nose_x = (rel_nose[:, 0] * ux + rel_nose[:, 1] * uy) / iod
    nose_y = -rel_nose[:, 0] * uy + rel_nose[:, 1] * ux
    mouth_y = -mouth[:, 0] * uy + mouth[:, 1] * ux
    share = nose_y / np.where(np.abs(mouth_y) > 1e-6, mouth_y, 1e-6)
    yaw = np.clip(1 - np.abs(nose_x) / YAW_FULL, 0, 1)
    pitch = np.clip(1 - np.abs(share - FRONTAL_NOSE_SHARE) / PITCH_FULL, 0, 1)
    return FRONTAL_FLOOR + (1 - FRONTAL_FLOOR) * yaw * pitch


def crop_gate(crop: np.ndarray, min_sharpness: float, max_clipped: float) -> tuple[str | None, float]:
    """(why the quality gate drops this face crop, its sharpness): ``"blurred"`` (``quality.min_sharpness``),
    ``"exposure"`` (``quality.max_clipped``) or None when it may be embedded. The crop checks of the gate, in the
    order they apply, in one place for the detect stage and ``gallery enroll --video``."""
    s = crop_sharpness(crop)
    if s < min_sharpness:
        return "blurred", s
    if exposure_problem(crop, max_clipped) is not None:
        return "exposure", s
    return None, s


def face_quality(det_score, size, sharpness, landmarks=None):
    """How good a look of a face is, in 0..1 (numpy arrays or floats): the detector's score, scaled down for faces
    under 100 px (``min(width, height)`` of the box), for chips under a sharpness of 100 (variance of the
    Laplacian) and, given the landmarks, for a turned or tilted face (``frontality``). Ranks the chips of a track
    (the embed budget, the track rule's weights, enrolment from video), so the budget goes to the best looks."""
    q = det_score * np.minimum(1.0, np.asarray(size) / 100.0) * np.minimum(1.0, np.asarray(sharpness) / 100.0)
    return q if landmarks is None else q * frontality(landmarks)


# ----------------------------------------------------------------------------------------- match: vote
#: Looks matching nobody before a track is called "unknown", whatever ``matching.votes`` is: one blurred or
#: turned-away first chip must not raise an unknown-face alert for someone the next chip identifies.
UNKNOWN_MISSES = 2

@dataclass
class TrackVote:
    """The identity vote of one track.

    A track becomes a watchlist hit for X once ``needed`` of its embeddings named X at or above the votes
    threshold (calibrated for exactly this on passes of a track's looks, so a lucky frame is a chance the
    threshold already paid for). It becomes "unknown" once ``max(needed, UNKNOWN_MISSES)`` embeddings matched
    nobody *and* none matched anyone (a single vote for X keeps it from being called unknown).
    Several identities reaching ``needed``: the most votes wins; a tie goes to the higher best score.
    Each outcome is reported once per track (``decide`` returns it the first time only).
    """

    needed: int
    start: float
    votes: Counter = field(default_factory=Counter)
    best: dict = field(default_factory=dict)  # identity (None = nobody) -> best score seen
    misses: int = 0
    decided: set = field(default_factory=set)
    last_seen: float = 0.0

    def add(self, identity: str | None, score: float) -> None:
        """One embedding's outcome: ``identity`` is the accepted name, None when it matched nobody."""
        if identity is not None:
            self.votes[identity] += 1
        else:
            self.misses += 1
        self.best[identity] = max(self.best.get(identity, -1.0), score)

    def identity(self) -> str | None:
        """The identity the vote names so far (None when no one has ``needed`` votes)."""
        ready = [n for n, v in self.votes.items() if v >= self.needed]
        if not ready:
            return None
        return max(ready, key=lambda n: (self.votes[n], self.best[n]))

    def decide(self) -> tuple[DecisionKind, str | None, float] | None:
        """A new decision (kind, identity, best score) the first time the vote reaches one, else None."""
        ident = self.identity()
        if ident is not None and ident not in self.decided:
            self.decided.add(ident)
            return "watchlist", ident, self.best[ident]
        if not self.votes and self.misses >= max(self.needed, UNKNOWN_MISSES) and None not in self.decided:
            self.decided.add(None)
            return "unknown", None, self.best.get(None, -1.0)
        return None


# ----------------------------------------------------------------------------------------- match: track rule
@dataclass
class TrackTemplate:
    """The track rule (``recognition.rule: track``): a track is decided on the quality-weighted mean of its best
    embeddings (``engines.aggregate.track_vector``) compared with each person's template, not on single chips.

    The track keeps at most ``limit`` embeddings (its best by quality once full). Once it holds ``needed`` it is
    scored after every new one (``vector``); ``observe`` takes the best candidate's outcome at the track
    threshold. Exactly what ``calibrate`` measures on pass-level trials: the decision is the first prefix of at
    least ``needed`` looks whose mean reaches the threshold. A watchlist outcome is reported once per identity;
    "unknown" once, only while no identity was ever accepted.
    """

    needed: int
    limit: int
    start: float
    embeddings: list = field(default_factory=list)
    quality: list = field(default_factory=list)
    decided: set = field(default_factory=set)
    best: dict = field(default_factory=dict)  # identity (None = nobody) -> best score seen
    current: str | None = None  # the identity the track was last accepted as
    last_seen: float = 0.0

    def add(self, embedding: np.ndarray, quality: float) -> bool:
        """Keep one embedding; when full, it replaces the worst kept one if better. False when it was not kept."""
        if len(self.embeddings) < self.limit:
            self.embeddings.append(np.asarray(embedding, np.float32))
            self.quality.append(float(quality))
            return True
        worst = int(np.argmin(self.quality))
        if quality <= self.quality[worst]:
            return False
        self.embeddings[worst], self.quality[worst] = np.asarray(embedding, np.float32), float(quality)
        return True

    @property
    def ready(self) -> bool:
        return len(self.embeddings) >= self.needed

    def vector(self) -> np.ndarray:
        return track_vector(np.stack(self.embeddings), np.asarray(self.quality))

    def observe(self, identity: str | None, score: float) -> tuple[DecisionKind, str | None, float] | None:
        """The outcome of the track's current vector (``identity``: accepted at the track threshold, else None)."""
        self.best[identity] = max(self.best.get(identity, -1.0), score)
        if identity is not None:
            self.current = identity
            if identity not in self.decided:
                self.decided.add(identity)
                return "watchlist", identity, score
            return None
        if self.current is None and None not in self.decided and self.ready:
            self.decided.add(None)
            return "unknown", None, score
        return None


# ----------------------------------------------------------------------------------------- alert: rules
class AlertRules:
    """Which decisions raise an alert, per camera (``cameras[].alert_on``): watchlist, unknown or both."""

    def __init__(self, per_camera: dict[str, str], default: str = "watchlist") -> None:
        self.per_camera, self.default = dict(per_camera), default

    def wanted(self, camera: str, kind: str) -> bool:
        rule = self.per_camera.get(camera, self.default)
        return kind in ("watchlist", "unknown") and rule in (kind, "both")


class UnknownGate:
    """Whether an unknown face is good enough to alert on: big enough (``min_face`` px, per camera) and sharp
    enough (variance of the Laplacian of its chip). Why: a camera alerting on unknown faces would otherwise
    flood the operator with blurred and tiny faces, and those are the ones that match no one."""

    def __init__(self, min_face: dict[str, int], default_min_face: int, min_sharpness: float) -> None:
        self.min_face, self.default_min_face, self.min_sharpness = dict(min_face), default_min_face, min_sharpness

    def reason(self, camera: str, box: Sequence[float], sharpness: float | None) -> str | None:
        """Why the face is not alerted on ("small" / "blurred"), or None when it passes."""
        if len(box) == 4 and min(box[2] - box[0], box[3] - box[1]) < self.min_face.get(camera, self.default_min_face):
            return "small"
        if sharpness is not None and sharpness < self.min_sharpness:
            return "blurred"
        return None


class Cooldown:
    """At most one alert per (camera, identity) per ``seconds``; unknown faces share the key (camera, None).

    ``t`` is whatever clock the caller runs on: wall time live, video time in ``scan``. An alert that is
    suppressed does not restart the cooldown.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.last: dict[tuple[str, str | None], float] = {}

    def allow(self, camera: str, identity: str | None, t: float) -> bool:
        key = (camera, identity)
        if key in self.last and t - self.last[key] < self.seconds:
            return False
        self.last[key] = t
        return True


# ----------------------------------------------------------------------------------------- embed: budget
class EmbeddingBudget:
    """At most ``limit`` embeddings per track, spent on its better chips, and spread over its life.

    Within one batch a track's chips are considered best first; a chip is embedded only while it is at
    least ``keep_share`` as good as the track's best so far, so a track's budget is not spent on the
    blurred frames of someone walking away; and only ``min_gap_s`` or more after the track's last embedded
    chip (on the frames' own clock: video time when scanning a file), so the budget buys different looks of a
    person (turning, nearer, in other light) instead of five near-copies of the first frames: the votes rule
    needs looks that fail independently. Tracks unseen for ``forget_s`` are forgotten.
    """

    def __init__(self, limit: int, keep_share: float = 0.8, forget_s: float = 60.0, min_gap_s: float = 0.0) -> None:
        self.limit, self.keep_share, self.forget_s, self.min_gap_s = limit, keep_share, forget_s, min_gap_s
        # track id -> [embedded, best quality, last seen (wall), last embedded (frame clock)]
        self.tracks: dict[int, list[float]] = {}

    def choose(self, track_ids: Sequence[int], quality: Sequence[float], now: float,
               frame_times: Sequence[float] | None = None) -> np.ndarray:
        """Mask of the faces (parallel ``track_ids``/``quality``/``frame_times``) to embed; ``frame_times``
        (default: ``now`` for all) is each face's frame time, which ``min_gap_s`` is measured on."""
        q = np.asarray(quality, dtype=np.float64)
        ft = np.full(len(q), now, dtype=np.float64) if frame_times is None else np.asarray(frame_times, np.float64)
        mask = np.zeros(len(q), bool)
        for i in np.argsort(-q, kind="stable"):
            st = self.tracks.setdefault(int(track_ids[i]), [0, 0.0, now, -np.inf])
            st[2] = now
            spaced = ft[i] - st[3] >= self.min_gap_s or ft[i] < st[3]  # a clock going back (a loop) starts over
            if st[0] < self.limit and q[i] >= self.keep_share * st[1] and spaced:
                mask[i] = True
                st[0] += 1
                st[1] = max(st[1], float(q[i]))
                st[3] = ft[i]
        return mask

    def forget(self, now: float) -> None:
        self.tracks = {t: s for t, s in self.tracks.items() if now - s[2] < self.forget_s}


# ----------------------------------------------------------------------------------------- detect: batch cut
class Timed(Protocol):
    camera: str
    seq: int


class LiveBatchCut:
    """Which live frames one detector batch takes, so latency stays bounded however many cameras there are.

    Only the newest frame of each camera is worth processing (older ones are stale). The batch is then cut
    to what the detector processes within ``budget_ms`` by its measured cost per frame (at least one frame,
    at most ``max_batch``), with the cameras served longest ago first, so under overload every camera
    takes turns instead of one starving.
    """

    def __init__(self, max_batch: int, budget_ms: float, smoothing: float = 0.2) -> None:
        self.max_batch, self.budget_ms, self.smoothing = max_batch, budget_ms, smoothing
        self.cost_ms: float | None = None  # moving average of processing time per frame
        self.served: dict[str, float] = {}  # camera -> when it last had a frame processed

    def observe(self, frames: int, ms: float) -> None:
        """A batch of ``frames`` took ``ms``: update the cost per frame."""
        if frames <= 0:
            return
        per = ms / frames
        self.cost_ms = per if self.cost_ms is None else (1 - self.smoothing) * self.cost_ms + self.smoothing * per

    def limit(self) -> int:
        """Frames one batch may hold: as many as fit in the budget (1 before anything was measured)."""
        fit = 1 if self.cost_ms is None else max(1, int(self.budget_ms // max(self.cost_ms, 1e-3)))
        return min(self.max_batch, fit)

    def cut(self, frames: Iterable[Timed], now: float) -> tuple[list, int, int]:
        """(frames to process, dropped as stale, dropped for overload)."""
        latest: dict[str, Timed] = {}
        stale = 0
        for m in frames:
            if m.camera in latest:
                stale += 1
            if m.camera not in latest or m.seq >= latest[m.camera].seq:
                latest[m.camera] = m
        order = sorted(latest.values(), key=lambda m: self.served.get(m.camera, float("-inf")))
        keep = order[: self.limit()]
        for m in keep:
            self.served[m.camera] = now
        return keep, stale, len(order) - len(keep)
