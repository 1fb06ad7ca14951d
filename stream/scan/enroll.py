"""Enrolment from a video (``facewatch gallery enroll NAME --video FILE``): the best distinct looks of its one person.

How: frames are sampled at ``SAMPLE_FPS`` (every ``round(fps / SAMPLE_FPS)``-th frame), faces detected, gated by
the pipeline's quality gate (``quality.min_face``, ``min_det_score``, ``min_sharpness``, ``max_clipped``), linked into tracks by the
pipeline's own ``IouTracker`` (tracks also end at scene cuts, ``SceneCuts``) and embedded, exactly as the detect and
embed stages do. Each track's face is the quality-weighted mean of its embeddings (``engines.aggregate.
track_vector``); two tracks are the same person when those means reach the per-photo threshold (``cfg.threshold``),
and "same person" is transitive (single linkage), so somebody who leaves and comes back is still one person.

More than one person: refused, with the tracks listed, unless the caller says which (``track``: the person of that
track, with their other tracks; ``largest``: the person whose faces are largest, by the median face size of their
chips). Of the chosen person's chips, the best are kept first (``rank``: the pipeline's ``face_quality``, then face
size, sharpness and detector score) and a chip is skipped as a near-duplicate when its cosine with a chip already
kept is at least ``duplicate_cosine(threshold)`` = ``1 - (1 - threshold) / 5`` (0.990 at the fast profile's 0.9508:
two frames of one still look score ~0.995, two different photos of one person ~0.95-0.98), until ``max_samples``.

Nothing here writes: the caller enrols the kept chips through the same ``Gallery.enroll`` call photos use (crops
kept owner-only, the embedder recorded, one transaction).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engines.aggregate import track_vector
from engines.analyzer import FaceAnalyzer
from engines.face_model import face_crops
from stream.config import Config
from stream.pipeline.decisions import crop_gate, face_quality

SAMPLE_FPS = 4.0
DUPLICATE_SHARE = 0.2  # a near-duplicate is closer to a kept chip than this share of the threshold's distance
CAMERA = "enroll"  # the tracker's camera name for the one video
#: Why a detected face was not kept, as counted in the result.
GATE_REASONS = ("small", "low_score", "blurred", "exposure")  # the quality gate, in the order it applies
REASONS = (*GATE_REASONS, "other_person", "duplicate", "over_limit")


class VideoEnrollError(ValueError):
    """A video that gives nothing to enrol (unreadable, no usable face, several people): one line saying why."""


def duplicate_cosine(threshold: float) -> float:
    """The cosine at and above which two chips are near-duplicates (one of them is skipped)."""
    return 1.0 - (1.0 - threshold) * DUPLICATE_SHARE


@dataclass
class VideoChip:
    """One gated, embedded face of a sampled frame."""

    frame: int
    time: float
    track: int  # the video's own track number (1, 2, ... in order of first appearance)
    box: list[float]
    det_score: float
    size: float
    sharpness: float
    quality: float
    embedding: np.ndarray
    crop_jpeg: bytes

    def rank(self) -> tuple[float, float, float, float]:
        return (self.quality, self.size, self.sharpness, self.det_score)

    def to_dict(self) -> dict[str, Any]:
        return {"frame": self.frame, "time": round(self.time, 3), "track": self.track, "quality": round(self.quality, 4),
                "det_score": round(self.det_score, 4), "size": round(self.size, 1),
                "sharpness": round(self.sharpness, 1), "box": self.box}


@dataclass
class VideoTrack:
    id: int
    chips: list[VideoChip] = field(default_factory=list)
    person: int = 0  # the person (1, 2, ...) the track belongs to, after ``group_people``

    @property
    def first_seen(self) -> float:
        return self.chips[0].time

    @property
    def last_seen(self) -> float:
        return self.chips[-1].time

    def vector(self) -> np.ndarray:
        return track_vector(np.stack([c.embedding for c in self.chips]), np.array([c.quality for c in self.chips]))

    def to_dict(self) -> dict[str, Any]:
        return {"track": self.id, "person": self.person, "frames": len(self.chips), "first_seen": round(self.first_seen, 3),
                "last_seen": round(self.last_seen, 3)}


@dataclass
class VideoFaces:
    """What was read of one video: its tracks of gated faces, and the faces gated out (by reason)."""

    file: str
    fps: float
    frames_expected: int | None
    frames_decoded: int = 0
    frames_sampled: int = 0
    tracks: list[VideoTrack] = field(default_factory=list)
    rejected: Counter = field(default_factory=Counter)

    def people(self) -> dict[int, list[VideoTrack]]:
        out: dict[int, list[VideoTrack]] = {}
        for t in self.tracks:
            out.setdefault(t.person, []).append(t)
        return out


@dataclass
class VideoSelection:
    """The outcome: the chosen person's tracks and the chips to enrol, best first."""

    faces: VideoFaces
    person: int
    kept: list[VideoChip]
    rejected: Counter
    duplicate_cosine: float

    def to_dict(self) -> dict[str, Any]:
        f = self.faces
        return {"video": f.file, "fps": round(f.fps, 3), "frames_expected": f.frames_expected,
                "frames_decoded": f.frames_decoded, "frames_sampled": f.frames_sampled,
                "tracks": [t.to_dict() for t in f.tracks], "person_tracks": [t.id for t in f.people()[self.person]],
                "kept": [c.to_dict() for c in self.kept], "rejected": {r: int(self.rejected.get(r, 0)) for r in REASONS},
                "duplicate_cosine": round(self.duplicate_cosine, 4)}


def read_faces(analyzer: FaceAnalyzer, cfg: Config, path: str | Path, sample_fps: float = SAMPLE_FPS) -> VideoFaces:
    """Decode ``path``, sample it, detect, gate, track and embed; ``VideoEnrollError`` when it cannot be read."""
    from stream.pipeline.capture import VideoError, frames_expected, open_recorded
    from stream.pipeline.tracker import IouTracker, SceneCuts

    try:
        cap = open_recorded(str(path))  # a FIFO, a directory, an empty file: refused before FFmpeg opens it
    except VideoError as exc:
        raise VideoEnrollError(f"{path}: {exc}") from None
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = float(fps) if np.isfinite(fps) and fps > 0 else 25.0
    step = max(1, int(round(fps / sample_fps)))
    out = VideoFaces(str(path), fps, frames_expected(cap))
    tracker = IouTracker(max_age_s=cfg.tracking.max_gap_s)
    scenes = SceneCuts(cfg.tracking.cut_threshold, cfg.tracking.max_gap_s)
    q = cfg.quality
    numbers: dict[int, int] = {}  # the tracker's ids -> 1, 2, ...
    try:
        while cap.grab():
            i = out.frames_decoded
            out.frames_decoded += 1
            if i % step:
                continue
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                continue
            out.frames_sampled += 1
            t = i / fps
            if scenes.check(CAMERA, frame, t) is not None:
                tracker.end_camera(CAMERA)
            faces = analyzer.detector.detect(frame)
            if not len(faces):
                continue
            sizes = faces.sizes
            keep = np.ones(len(faces), bool)
            for reason, bad in (("small", sizes < q.min_face), ("low_score", faces.scores < q.min_det_score)):
                out.rejected[reason] += int((bad & keep).sum())
                keep &= ~bad
            if not keep.any():
                continue
            crops = face_crops(frame, faces.landmarks[keep])
            gate = [crop_gate(c, q.min_sharpness, q.max_clipped) for c in crops]
            out.rejected.update(why for why, _ in gate if why is not None)
            passed = np.array([why is None for why, _ in gate])
            if not passed.any():
                continue
            idx = np.flatnonzero(keep)[passed]
            crops, sharp = crops[passed], np.array([s for why, s in gate if why is None])
            ids, _ = tracker.update(CAMERA, faces.boxes[idx], t)
            embs = analyzer.embedder.embed_crops(crops)
            quality = face_quality(faces.scores[idx], sizes[idx], sharp, faces.landmarks[idx])
            for j, k in enumerate(idx):
                n = numbers.setdefault(int(ids[j]), len(numbers) + 1)
                if n > len(out.tracks):
                    out.tracks.append(VideoTrack(n))
                ok, buf = cv2.imencode(".jpg", crops[j], [cv2.IMWRITE_JPEG_QUALITY, 95])  # as the gallery keeps it
                out.tracks[n - 1].chips.append(VideoChip(
                    i, t, n, [round(float(v), 1) for v in faces.boxes[k]], float(faces.scores[k]), float(sizes[k]),
                    float(sharp[j]), float(quality[j]), np.asarray(embs[j], np.float32), buf.tobytes()))
    finally:
        cap.release()
    if out.frames_decoded == 0:
        raise VideoEnrollError(f"{path}: no frame could be decoded (not a video, or damaged)")
    return out


def group_people(tracks: list[VideoTrack], threshold: float) -> int:
    """Number each track's person: tracks whose mean faces reach ``threshold`` are the same person (transitively).
    Returns how many people there are."""
    if not tracks:
        return 0
    vecs = np.stack([t.vector() for t in tracks])
    sims = vecs @ vecs.T
    parent = list(range(len(tracks)))

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a in range(len(tracks)):
        for b in range(a + 1, len(tracks)):
            if sims[a, b] >= threshold:
                parent[root(b)] = root(a)
    people: dict[int, int] = {}
    for i, t in enumerate(tracks):  # people numbered in order of first appearance, like the tracks
        t.person = people.setdefault(root(i), len(people) + 1)
    return len(people)


def _describe(faces: VideoFaces) -> str:
    parts = []
    for person, tracks in faces.people().items():
        ts = ", ".join(f"track {t.id} ({len(t.chips)} frames, first seen at {t.first_seen:.1f} s)" for t in tracks)
        parts.append(f"person {person}: {ts}")
    return "; ".join(parts)


def _gated_text(rejected: Counter) -> str:
    parts = [f"{rejected[r]} {r.replace('_', ' ')}" for r in GATE_REASONS if rejected.get(r)]
    return f" ({', '.join(parts)})" if parts else ""


def select(faces: VideoFaces, threshold: float, max_samples: int, *, track: int | None = None,
           largest: bool = False) -> VideoSelection:
    """The chips to enrol: the one person's (or the chosen one's) best distinct chips, at most ``max_samples``."""
    if not faces.tracks:
        raise VideoEnrollError(f"{faces.file}: no usable face in {faces.frames_sampled} sampled frame(s) of "
                               f"{faces.frames_decoded}{_gated_text(faces.rejected)}; nothing enrolled")
    n = group_people(faces.tracks, threshold)
    people = faces.people()
    if track is not None:
        chosen = next((t for t in faces.tracks if t.id == track), None)
        if chosen is None:
            raise VideoEnrollError(f"{faces.file}: there is no track {track}; the video has {_describe(faces)}")
        person = chosen.person
    elif n > 1 and largest:
        person = max(people, key=lambda p: float(np.median([c.size for t in people[p] for c in t.chips])))
    elif n > 1:
        raise VideoEnrollError(f"{faces.file}: {n} different people, nothing enrolled: {_describe(faces)}; "
                               "choose one with --track N (that person) or --largest (the largest faces)")
    else:
        person = 1
    rejected = Counter({r: faces.rejected.get(r, 0) for r in GATE_REASONS})
    rejected["other_person"] = sum(len(t.chips) for p, ts in people.items() if p != person for t in ts)
    chips = sorted((c for t in people[person] for c in t.chips), key=VideoChip.rank, reverse=True)
    dup = duplicate_cosine(threshold)
    kept: list[VideoChip] = []
    for c in chips:
        if len(kept) >= max_samples:
            rejected["over_limit"] += 1
        elif kept and float(np.max(np.stack([k.embedding for k in kept]) @ c.embedding)) >= dup:
            rejected["duplicate"] += 1
        else:
            kept.append(c)
    return VideoSelection(faces, person, kept, rejected, dup)
