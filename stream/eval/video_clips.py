"""Labelled test clips made from a labelled photo folder, and the label files that say who appears when.

``make_clip_set(ROOT, OUT, ...)`` reads ``ROOT/<identity>/<i>.jpg`` and writes clips plus one label file each,
deterministically for a seed. Per enrolled person the first ``enroll`` photos (photo order: 2.jpg before 10.jpg)
are the enrolment and are never shown; each pass shows ``photos_per_pass`` OTHER photos of that person in turn
(equal shares of the pass: a person turning), the head moving across the frame while its size changes (zoom),
with a lighting change over the pass (gain ramp and side shading), a stretch of motion blur in most passes, and
sensor noise on every frame. Some segments show two faces at once (two lanes). Strangers (identities not
enrolled) pass the same way. Photos are small crops (112 px for wild_dev's ``es_`` family), so they are upscaled
to heads of ``HEAD_SINGLE``/``HEAD_PAIR`` px (the photo plus a 25 % replicated margin, feathered into the
background by an ellipse: a tight crop gives the detector no context otherwise).

Each clip holds at most one pass of each enrolled person (pass r of everyone is in clip r), so alert cooldowns
within a clip never hide a pass. Every pass enters at the left and leaves at the right with a gap between
segments, so the tracker cannot carry one pass's track into the next.

Label file schema (version 1), JSON, one per clip (``load_labels`` validates it; every error is one line naming
the file and the field)::

    {
      "version": 1,
      "clip": "clip_00.mp4",            # the clip: relative to the label file's folder, or absolute
      "fps": 10.0,                      # the clip's frame rate (the evaluation checks the container agrees)
      "duration_s": 23.4,               # optional: length of the clip
      "enroll": {                       # the watchlist: who is enrolled, from which photos
        "es_Tina_Fey": ["/data/ids/es_Tina_Fey/1.jpg", "..."]
      },
      "appearances": [                  # every face that appears, enrolled or not
        {"identity": "es_Tina_Fey",     # a name; for an enrolled person, exactly a key of "enroll"
         "enrolled": true,              # must agree with "enroll" (a stranger is a name not in it)
         "start_s": 1.0, "end_s": 4.5,  # when it is visible, in video time, end_s > start_s
         "photos": ["..."],             # optional: the photos shown, in turn (they must exist)
         "boxes": [[0.0, 40, 130, 270, 410], "..."],  # optional: [t, x1, y1, x2, y2] of the head per frame
         "render": {"...": "..."}}      # optional, informational: how it was rendered
      ],
      "generator": {"...": "..."}       # optional, informational: how the set was made
    }

Photo paths are absolute or relative to the label file's folder. ``boxes`` lets the evaluation tell apart
faces that are on screen at the same time; without it, appearances are matched by time alone.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stream.eval.photos import EvalError, list_identities
from stream.media.files import regular_file_problem
from stream.media.images import load_image

LABELS_VERSION = 1
SIZE = (960, 540)  # frame size: detection costs ~50-100 ms per frame of this size on 2 CPU cores
FPS = 10.0
HEAD_SINGLE = (170, 280)  # rendered head height (px) of a face passing alone, at 540 px frame height
HEAD_PAIR = (150, 230)  # ... of two faces at once (two lanes)
PASS_S = (3.0, 4.0)  # seconds a pass lasts
GAP_S = 0.6  # between segments: the last head leaves at the right, the next enters at the left
PAIR_SHARE = 0.35  # share of a clip's passes shown two at a time
MARGIN = 0.25  # replicated border around a photo, each side, before the feathered ellipse


class VideoLabelError(EvalError):
    """A label file (or what it names) that cannot be used: one line naming the file and the field."""


# ------------------------------------------------------------------------------------------ the label schema
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class LabelledAppearance(_Strict):
    identity: str = Field(..., min_length=1)
    enrolled: bool
    start_s: float = Field(..., ge=0)
    end_s: float = Field(..., ge=0)
    photos: list[str] = Field(default_factory=list)
    boxes: list[tuple[float, float, float, float, float]] | None = None
    render: dict[str, Any] | None = None


class ClipLabels(_Strict):
    version: int = LABELS_VERSION
    clip: str = Field(..., min_length=1)
    fps: float = Field(..., gt=0, le=1000)
    duration_s: float | None = Field(None, gt=0)
    enroll: dict[str, list[str]]
    appearances: list[LabelledAppearance]
    generator: dict[str, Any] | None = None


@dataclass
class LoadedLabels:
    """A validated label file with its paths resolved."""

    path: Path
    labels: ClipLabels
    clip: Path
    enroll: dict[str, list[Path]]  # normalised name -> photos

    @property
    def appearances(self) -> list[LabelledAppearance]:
        return self.labels.appearances


def _loc(loc: tuple) -> str:
    out = ""
    for k in loc:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out or "(top level)"


def _resolve(base: Path, p: str) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() else base / q


def load_labels(path: str | Path) -> LoadedLabels:
    """Read and check one label file: JSON, the schema above, times, enrolment, and that every photo and the clip
    are readable regular files (checked from ``stat``: a FIFO is refused without being opened)."""
    from stream.store.gallery import GalleryError, normalize_name

    path = Path(path)
    problem = regular_file_problem(path)
    if problem:
        raise VideoLabelError(f"{path}: {problem}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise VideoLabelError(f"{path}: not a text file (a label file is UTF-8 JSON)") from None
    except OSError as exc:
        raise VideoLabelError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise VideoLabelError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise VideoLabelError(f"{path}: the top level must be a JSON object, not {type(data).__name__}")
    try:
        labels = ClipLabels.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise VideoLabelError(f"{path}: {_loc(tuple(first['loc']))}: {first['msg']}{more}") from None
    if labels.version != LABELS_VERSION:
        raise VideoLabelError(f"{path}: version: {labels.version} is not supported (this version reads {LABELS_VERSION})")
    base = path.parent
    enroll: dict[str, list[Path]] = {}
    for name, photos in labels.enroll.items():
        try:
            norm = normalize_name(name)
        except GalleryError as exc:
            raise VideoLabelError(f"{path}: enroll.{name}: {exc}") from None
        if norm in enroll:
            raise VideoLabelError(f"{path}: enroll.{name}: the same person as another key once normalised ({norm!r})")
        if not photos:
            raise VideoLabelError(f"{path}: enroll.{name}: no photos")
        enroll[norm] = []
        for i, p in enumerate(photos):
            q = _resolve(base, p)
            why = regular_file_problem(q)
            if why:
                raise VideoLabelError(f"{path}: enroll.{name}[{i}]: {q}: {why}")
            enroll[norm].append(q)
    for i, a in enumerate(labels.appearances):
        where = f"{path}: appearances[{i}]"
        if a.end_s <= a.start_s:
            raise VideoLabelError(f"{where}.end_s: {a.end_s:g} must be after start_s {a.start_s:g}")
        try:
            ident = normalize_name(a.identity)
        except GalleryError as exc:
            raise VideoLabelError(f"{where}.identity: {exc}") from None
        if a.enrolled != (ident in enroll):
            raise VideoLabelError(f"{where}.enrolled: {a.enrolled} but {a.identity!r} is "
                                  f"{'not ' if a.enrolled else ''}a key of enroll")
        a.identity = ident
        for j, p in enumerate(a.photos):
            q = _resolve(base, p)
            why = regular_file_problem(q)
            if why:
                raise VideoLabelError(f"{where}.photos[{j}]: {q}: {why}")
        if a.boxes is not None:
            for j, b in enumerate(a.boxes):
                if not (b[3] > b[1] and b[4] > b[2]):
                    raise VideoLabelError(f"{where}.boxes[{j}]: [t, x1, y1, x2, y2] needs x2 > x1 and y2 > y1")
            a.boxes = sorted(a.boxes)
    clip = _resolve(base, labels.clip)
    why = regular_file_problem(clip)
    if why:
        raise VideoLabelError(f"{path}: clip: {clip}: {why}")
    return LoadedLabels(path=path, labels=labels, clip=clip, enroll=enroll)


# ------------------------------------------------------------------------------------------ rendering
def head_image(photo: np.ndarray) -> np.ndarray:
    """A photo with a replicated margin (``MARGIN`` each side): the head as it is pasted, before scaling."""
    h, w = photo.shape[:2]
    py, px = int(round(h * MARGIN)), int(round(w * MARGIN))
    return cv2.copyMakeBorder(photo, py, py, px, px, cv2.BORDER_REPLICATE)


def _feather(w: int, h: int) -> np.ndarray:
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (w // 2, h // 2), (int(w * 0.42), int(h * 0.47)), 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), max(1.0, h * 0.035))[..., None]


def _background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    small = rng.integers(40, 200, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
    bg = cv2.resize(cv2.GaussianBlur(small, (3, 3), 0), (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    ramp = np.linspace(0.8, 1.1, w, dtype=np.float32)[None, :, None]  # a room lit from one side
    return np.clip(bg * ramp, 0, 255)


@dataclass
class Pass:
    """One face crossing the frame: the photos shown in turn and how they are rendered."""

    identity: str
    enrolled: bool
    photos: list[Path]
    f0: int  # first frame
    f1: int  # frame after the last
    heights: tuple[float, float]  # head height at start and end (zoom)
    y: tuple[float, float]  # head centre y at start and end
    gain: tuple[float, float]  # brightness at start and end (lighting change)
    shade: float  # side shading strength (0 = none), on the left when negative
    blur: tuple[float, float, int] | None  # (from, to) as shares of the pass, kernel length px
    images: list[np.ndarray] = field(default_factory=list, repr=False)

    def at(self, i: int, size: tuple[int, int]) -> tuple[int, float, float, float, float, int]:
        """(photo index, head height, centre x, centre y, gain, blur kernel) at frame ``i``."""
        w, _ = size
        p = (i - self.f0) / max(self.f1 - self.f0 - 1, 1)
        k = min(int(p * len(self.photos)), len(self.photos) - 1)
        hh = self.heights[0] + (self.heights[1] - self.heights[0]) * p
        img = self.images[k]
        hw = hh * img.shape[1] / img.shape[0]
        x0, x1 = 20 + hw / 2, w - 20 - hw / 2  # enter at the left edge, leave at the right one
        cx = x0 + (x1 - x0) * p
        cy = self.y[0] + (self.y[1] - self.y[0]) * p
        g = self.gain[0] + (self.gain[1] - self.gain[0]) * p
        kb = self.blur[2] if self.blur and self.blur[0] <= p <= self.blur[1] else 0
        return k, hh, cx, cy, g, kb


def _paste(frame: np.ndarray, p: Pass, i: int, size: tuple[int, int]) -> list[float]:
    """Draw pass ``p`` at frame ``i``; returns the head box [x1, y1, x2, y2] as drawn."""
    w, h = size
    k, hh, cx, cy, g, kb = p.at(i, size)
    img = p.images[k]
    th = int(round(hh))
    tw = int(round(hh * img.shape[1] / img.shape[0]))
    head = cv2.resize(img, (tw, th), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    shade = 1.0 - abs(p.shade) * np.linspace(1.0, 0.0, tw, dtype=np.float32)
    head *= (shade if p.shade < 0 else shade[::-1])[None, :, None] * g
    if kb:
        kernel = np.zeros((kb, kb), np.float32)
        kernel[kb // 2, :] = 1.0 / kb
        head = cv2.filter2D(head, -1, kernel)
    x1 = int(round(min(max(cx - tw / 2, 0), w - tw)))
    y1 = int(round(min(max(cy - th / 2, 0), h - th)))
    m = _feather(tw, th)
    roi = frame[y1:y1 + th, x1:x1 + tw]
    roi[:] = roi * (1 - m) + np.clip(head, 0, 255) * m
    return [float(x1), float(y1), float(x1 + tw), float(y1 + th)]


def render_passes(path: Path, passes: list[Pass], n_frames: int, *, size: tuple[int, int] = SIZE, fps: float = FPS,
                  noise: float = 5.0, seed: int = 0, codec: str = "mp4v") -> dict[int, list[list[float]]]:
    """Write the clip; returns each pass's head boxes ``[t, x1, y1, x2, y2]`` per frame (by pass index)."""
    rng = np.random.default_rng(seed)
    bg = _background(rng, size)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path} with codec {codec}")
    for p in passes:
        p.images = [head_image(load_image(ph)) for ph in p.photos]
    boxes: dict[int, list[list[float]]] = {j: [] for j in range(len(passes))}
    try:
        for i in range(n_frames):
            frame = bg.copy()
            for j, p in enumerate(passes):
                if p.f0 <= i < p.f1:
                    b = _paste(frame, p, i, size)
                    boxes[j].append([round(i / fps, 4), *b])
            frame += rng.standard_normal(frame.shape, dtype=np.float32) * np.float32(noise)  # sensor noise
            writer.write(np.clip(frame, 0, 255).astype(np.uint8))
    finally:
        writer.release()
    return boxes


# ------------------------------------------------------------------------------------------ the clip set
def _pick(photos: list[Path], used: set[Path], n: int, rng: np.random.Generator) -> list[Path]:
    """``n`` photos in random order, unused ones first (passes show different photos while there are any)."""
    fresh = [p for p in photos if p not in used]
    pool = fresh if len(fresh) >= n else photos
    chosen = [pool[i] for i in rng.permutation(len(pool))[:n]]
    used.update(chosen)
    return chosen


def _segments(items: list[tuple[str, bool, list[Path]]], rng: np.random.Generator) -> list[list[tuple[str, bool, list[Path]]]]:
    """The clip's passes grouped into segments of one face, or two at once (``PAIR_SHARE`` of the passes, at
    least one pair when there are two passes; never a person with themselves)."""
    order = [items[i] for i in rng.permutation(len(items))]
    n_pairs = max(1 if len(order) >= 2 else 0, int(round(len(order) * PAIR_SHARE / 2)))
    segs: list[list] = []
    rest = list(order)
    while rest:
        a = rest.pop(0)
        if n_pairs and rest:
            b = next((x for x in rest if x[0] != a[0]), None)
            if b is not None:
                rest.remove(b)
                segs.append([a, b])
                n_pairs -= 1
                continue
        segs.append([a])
    return [segs[i] for i in rng.permutation(len(segs))]


def _plan(segs: list[list[tuple[str, bool, list[Path]]]], rng: np.random.Generator, fps: float,
          size: tuple[int, int]) -> tuple[list[Pass], int]:
    w, h = size
    scale = h / 540.0
    t = 0.8
    passes: list[Pass] = []
    for seg in segs:
        pair = len(seg) == 2
        end = t
        for lane, (ident, enrolled, photos) in enumerate(seg):
            start = t + (lane * rng.uniform(0.3, 0.8))
            dur = rng.uniform(*PASS_S)
            lo, hi = HEAD_PAIR if pair else HEAD_SINGLE
            h0 = rng.uniform(lo, hi)
            h1 = rng.uniform(lo, hi)
            if abs(h1 - h0) < 0.25 * (hi - lo):  # a visible zoom, in or out
                h1 = hi if h0 < (lo + hi) / 2 else lo
            hmax = max(h0, h1) * scale
            cy = (h * (0.27 if lane == 0 else 0.73)) if pair else h / 2 + rng.uniform(-0.06, 0.06) * h
            ys = tuple(float(np.clip(cy + d, hmax / 2, h - hmax / 2)) for d in (rng.uniform(-0.05, 0.05) * h,
                                                                                 rng.uniform(-0.05, 0.05) * h))
            dark = rng.uniform(0.5, 0.75) if rng.random() < 0.6 else rng.uniform(1.15, 1.3)
            gain = (1.0, dark) if rng.random() < 0.5 else (dark, 1.0)
            shade = float(rng.uniform(0.15, 0.4) * (1 if rng.random() < 0.5 else -1))
            blur = None
            if rng.random() < 0.7:
                share = rng.uniform(0.25, 0.4)
                b0 = rng.uniform(0.0, 1.0 - share)
                blur = (float(b0), float(b0 + share), int(rng.choice([5, 7, 9])))
            f0 = int(math.ceil(start * fps))
            f1 = int(math.ceil((start + dur) * fps))
            passes.append(Pass(ident, enrolled, photos, f0, f1, (h0 * scale, h1 * scale), ys,
                               (float(gain[0]), float(gain[1])), shade, blur))
            end = max(end, f1 / fps)
        t = end + GAP_S
    return passes, int(math.ceil((t + 0.2) * fps))


def make_clip_set(root: str | Path, out: str | Path, *, people: int = 6, passes: int = 3, strangers: int = 4,
                  stranger_passes: int = 1, enroll: int = 3, photos_per_pass: int = 3, seed: int = 0,
                  only: str | None = "es_", size: tuple[int, int] = SIZE, fps: float = FPS,
                  noise: tuple[float, float] = (3.0, 7.0)) -> list[Path]:
    """Write ``passes`` clips (clip r holds pass r of every enrolled person, and its share of the stranger passes)
    with their label files into ``out``; returns the label files. Deterministic for ``seed``.

    ``only``: identities whose folder name starts with this (one data family: the MANIFEST of the dev data warns
    that families may share a person under two names, so a stranger from another family may not be one)."""
    root, out = Path(root), Path(out)
    if people < 1 or passes < 1 or strangers < 0 or enroll < 1 or photos_per_pass < 1:
        raise EvalError("people, passes, enroll and photos-per-pass must be at least 1, strangers at least 0")
    photos = list_identities(root, only)
    rng = np.random.default_rng(seed)
    names = sorted(photos)
    names = [names[i] for i in rng.permutation(len(names))]
    can_enrol = [n for n in names if len(photos[n]) >= enroll + photos_per_pass]
    if len(can_enrol) < people:
        raise EvalError(f"--root {root}: {len(can_enrol)} identities{f' starting with {only!r}' if only else ''} have "
                        f"the {enroll + photos_per_pass} photos an enrolled person needs, {people} asked for")
    enrolled = can_enrol[:people]
    others = [n for n in names if n not in enrolled and len(photos[n]) >= photos_per_pass]
    if len(others) < strangers:
        raise EvalError(f"--root {root}: {len(others)} other identities with {photos_per_pass} photos for strangers, "
                        f"{strangers} asked for")
    stranger_ids = others[:strangers]
    out.mkdir(parents=True, exist_ok=True)
    enrolment = {n: photos[n][:enroll] for n in enrolled}
    used: dict[str, set[Path]] = {n: set() for n in names}
    rounds: list[list[tuple[str, bool, list[Path]]]] = [[] for _ in range(passes)]
    for n in enrolled:
        shown = photos[n][enroll:]
        for r in range(passes):
            rounds[r].append((n, True, _pick(shown, used[n], photos_per_pass, rng)))
    k = 0
    for n in stranger_ids:
        for _ in range(stranger_passes):
            rounds[k % passes].append((n, False, _pick(photos[n], used[n], photos_per_pass, rng)))
            k += 1
    label_files = []
    generator = {"root": str(root.resolve()), "only": only, "people": people, "passes": passes,
                 "strangers": strangers, "stranger_passes": stranger_passes, "enroll": enroll,
                 "photos_per_pass": photos_per_pass, "seed": seed, "size": list(size), "fps": fps}
    for r, items in enumerate(rounds):
        crng = np.random.default_rng([seed, r])
        plan, n_frames = _plan(_segments(items, crng), crng, fps, size)
        sigma = float(crng.uniform(*noise))
        clip = out / f"clip_{r:02d}.mp4"
        boxes = render_passes(clip, plan, n_frames, size=size, fps=fps, noise=sigma, seed=seed * 1000 + r)
        apps = []
        for j, p in enumerate(plan):
            apps.append({"identity": p.identity, "enrolled": p.enrolled, "start_s": round(p.f0 / fps, 4),
                         "end_s": round(p.f1 / fps, 4), "photos": [str(ph.resolve()) for ph in p.photos],
                         "boxes": [[round(v, 1) if q else v for q, v in enumerate(b)] for b in boxes[j]],
                         "render": {"head_px": [round(v) for v in p.heights], "gain": [round(v, 3) for v in p.gain],
                                    "side_shade": round(p.shade, 3), "noise_sigma": round(sigma, 2),
                                    "motion_blur": None if p.blur is None else
                                    {"from_s": round((p.f0 + p.blur[0] * (p.f1 - p.f0)) / fps, 2),
                                     "to_s": round((p.f0 + p.blur[1] * (p.f1 - p.f0)) / fps, 2),
                                     "kernel_px": p.blur[2]}}})
        labels = {"version": LABELS_VERSION, "clip": clip.name, "fps": fps, "duration_s": round(n_frames / fps, 4),
                  "enroll": {n: [str(p.resolve()) for p in ps] for n, ps in enrolment.items()},
                  "appearances": sorted(apps, key=lambda a: a["start_s"]), "generator": {**generator, "clip": r}}
        lf = out / f"clip_{r:02d}.json"
        lf.write_text(json.dumps(labels, indent=1))
        label_files.append(lf)
    return label_files
