#!/usr/bin/env python3
"""Compare the face detectors facewatch supports (``detector.model``): RetinaFace, and MediaPipe BlazeFace with
``detector.range`` full and short. A benchmark, not a test: one Markdown table (``--json`` for machine output).

Why: choosing a detector trades three things: which faces it finds, what it costs per frame, and how well
recognition works on the faces it aligns (BlazeFace has no mouth corners, so its crops are aligned from 4
points instead of 5). The README's detector numbers come from this table, measured in one run on one machine,
each detector with its shipped thresholds (``detector.score_threshold``, ``detector.nms_threshold``)::

    python tools/compare_detectors.py [--threads 2] [--repeat 20] [--limit-pairs N] [--json]

Columns, one row per detector:

- **detection rate**, **misses**, **false / image**, **ms / image**: ``stream.eval.detect.evaluate_detect``
  (what ``facewatch eval detect`` runs) on ``--detection DIR`` (``images/`` + ``ground_truth.json``): labelled
  faces matched one-to-one at IoU >= 0.5 (found / labelled), labelled faces not found, detections that match no
  labelled face per image, and the mean detect time per image of that set.
- **ms 1280x720**, **ms 1920x1080**: median time of one ``detect`` call over ``--repeat`` calls (after 2 warm-up
  calls) on a grey, mildly noisy frame of that size with a real face photo (scikit-image's astronaut) in it.
- **small faces found (of 6)**: six copies of the astronaut's head, 60-120 px tall (faces ~35-70 px), spread over a
  1920x1080 frame; a head counts as found when a detection's centre lies inside it (each head once, so false
  detections elsewhere add nothing). Mean over 3 layouts.
- **photos with no face**: photos of the ``--pairs`` file where the detector found no face (after the padded
  retry that ``facewatch eval verify`` and enrolment also make) or that could not be read. Every pair using one
  is a rejection: a miss for a same-person pair, a correct reject for a different-person pair.
- **TAR @ FAR 1e-2 / 1e-3**: ``stream.eval.rates.tar_at_far`` with the threshold read off this detector's own
  different-person scores, so each detector is compared at the same false-accept rate (n/a when there are too
  few different-person pairs to measure that rate).
- **TAR @ shipped threshold (FAR)**: same-person pairs accepted, and different-person pairs accepted, at the
  shipped per-photo threshold of the recognition profile (``cfg.threshold``), which was calibrated on
  RetinaFace's alignment. Here a different-person pair without a face is in the FAR's denominator (a correct
  reject); ``eval verify`` leaves such pairs out of its FAR.

Recognition embeds the largest face of each photo with the default profile's embedder, each photo once per
detector (the same photo appears in many pairs). Exit status: 2 on bad input or when the models cannot be
prepared (one line on stderr), else 0.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engines.analyzer import FaceAnalyzer  # noqa: E402
from engines.face_model import FaceDetector, FaceEmbedder  # noqa: E402
from engines.files import ModelError  # noqa: E402
from stream.config import Config, load_config  # noqa: E402
from stream.eval.detect import evaluate_detect  # noqa: E402
from stream.eval.photos import EmbeddingCache, EvalError, Pair, pair_scores, parse_pairs, require_photos  # noqa: E402
from stream.eval.rates import RateAt, accepts, rate_at, tar_at_far  # noqa: E402

SHARED_FACES = Path(os.environ.get("FACEWATCH_SHARED") or REPO.parent / "shared") / "data" / "faces"
FARS = (1e-2, 1e-3)
WARMUP = 2
SMALL_HEADS_PX = (60, 72, 84, 96, 108, 120)
SMALL_LAYOUTS = 3
NO_FACE_SCORE = -2.0  # below every cosine: a pair with a faceless photo is rejected at any threshold


@dataclass(frozen=True)
class DetectorChoice:
    label: str
    section: dict[str, str]  # the config's ``detector`` section

    @property
    def needs_mediapipe(self) -> bool:
        return self.section["model"] == "mediapipe"


CHOICES = (DetectorChoice("retinaface", {"model": "retinaface"}),
           DetectorChoice("mediapipe full", {"model": "mediapipe", "range": "full"}),
           DetectorChoice("mediapipe short", {"model": "mediapipe", "range": "short"}))


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ inputs, checked before any model loads
def check_inputs(args: argparse.Namespace) -> list[Pair] | None:
    """The pairs to score (None with ``--skip-recognition``); EvalError naming the path that is not there."""
    if not args.skip_detection:
        if not args.detection.is_dir():
            raise EvalError(f"--detection {args.detection}: no such directory")
        for part in ("images", "ground_truth.json"):
            if not (args.detection / part).exists():
                raise EvalError(f"--detection {args.detection}: has no {part}")
    if args.skip_recognition:
        return None
    if not args.pairs.is_file():
        raise EvalError(f"--pairs {args.pairs}: no such file")
    if not args.root.is_dir():
        raise EvalError(f"--root {args.root}: no such directory")
    pairs = limit_pairs(parse_pairs(args.pairs), args.limit_pairs)
    require_photos(EmbeddingCache(None, args.root), pairs)
    return pairs


def limit_pairs(pairs: list[Pair], n: int | None) -> list[Pair]:
    """The first ``n`` same-person and the first ``n`` different-person pairs (all when ``n`` is None)."""
    if n is None:
        return pairs
    return [p for p in pairs if p.same][:n] + [p for p in pairs if not p.same][:n]


def mediapipe_missing() -> str | None:
    """Why the mediapipe rows cannot run, or None when ``import mediapipe`` works."""
    try:
        import mediapipe  # noqa: F401
    except ImportError as exc:
        return f"{type(exc).__name__}: {exc} (pip install 'facewatch[mediapipe]')"
    return None


# ------------------------------------------------------------------ models
def config_for(choice: DetectorChoice | None, threads: int) -> Config:
    over: dict[str, Any] = {"engines": {"engine": "onnxruntime", "threads": threads}}
    if choice is not None:
        over["detector"] = dict(choice.section)
    return load_config(overrides=over)


def prepare_models(cfg: Config, choices: list[DetectorChoice]) -> None:
    """The model files of every detector compared and of the recognition profile (pinned wheels, fetched once)."""
    from engines.model_store import ModelStore

    for model in dict.fromkeys(c.section["model"] for c in choices):
        ModelStore(cfg.home).prepare(cfg.recognition.profile, model)


@contextmanager
def open_detector(cfg: Config) -> Iterator[FaceDetector]:
    from stream.loaders import pipeline_detector

    det = pipeline_detector(cfg, live=False)
    try:
        yield det
    finally:
        close = getattr(det, "close", None)  # BlazeFace holds a MediaPipe task
        if close is not None:
            close()


# ------------------------------------------------------------------ test frames
def astronaut_bgr() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])


def grey_frame(w: int, h: int, seed: int = 0) -> np.ndarray:
    """Mid-grey with mild Gaussian noise (sigma 6), so the detector sees sensor-like texture, not a flat field."""
    noise = np.random.default_rng(seed).normal(0, 6, (h, w, 3))
    return np.clip(128 + noise, 0, 255).astype(np.uint8)


def paste(frame: np.ndarray, img: np.ndarray, x: int, y: int) -> np.ndarray:
    frame[y:y + img.shape[0], x:x + img.shape[1]] = img
    return frame


def photo_frame(w: int, h: int) -> np.ndarray:
    """A ``w`` x ``h`` frame with the astronaut photo (512 px) in its centre."""
    img = astronaut_bgr()
    return paste(grey_frame(w, h), img, (w - img.shape[1]) // 2, (h - img.shape[0]) // 2)


def small_faces_frame(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 1920x1080 frame with one astronaut head of each size in ``SMALL_HEADS_PX``, one per cell of a 3x2 grid
    at a seeded offset; returns (frame, head boxes [6, 4] x1 y1 x2 y2)."""
    from stream.media.clips import astronaut_head

    head = astronaut_head()
    rng = np.random.default_rng(seed)
    frame, boxes = grey_frame(1920, 1080, seed), []
    cells = [(c * 640, r * 540) for r in range(2) for c in range(3)]
    for (cx, cy), hh in zip(cells, rng.permutation(SMALL_HEADS_PX)):
        hw = round(hh * head.shape[1] / head.shape[0])
        x, y = cx + int(rng.integers(20, 640 - hw - 20)), cy + int(rng.integers(20, 540 - hh - 20))
        paste(frame, cv2.resize(head, (hw, int(hh)), interpolation=cv2.INTER_AREA), x, y)
        boxes.append((x, y, x + hw, y + hh))
    return frame, np.array(boxes, np.float32)


def heads_found(boxes: np.ndarray, heads: np.ndarray) -> int:
    """Heads with at least one detection centred inside them."""
    if len(boxes) == 0:
        return 0
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    return sum(bool(np.any((cx >= x1) & (cx <= x2) & (cy >= y1) & (cy <= y2))) for x1, y1, x2, y2 in heads)


# ------------------------------------------------------------------ the three measurements
def median_ms(fn: Callable[[], object], repeat: int) -> float:
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times)


def measure_detection(det: FaceDetector, detection_dir: Path) -> dict[str, Any]:
    rep = evaluate_detect(det, detection_dir / "images", detection_dir / "ground_truth.json")
    found = sum(r["found"] for r in rep["per_image"])
    return {"images": rep["images"], "faces": rep["faces"], "found": found, "misses": rep["faces"] - found,
            "detection_rate": rep["detection_rate"], "false_per_image": rep["false_per_image"],
            "false_detections": sum(r["false"] for r in rep["per_image"]), "score_threshold": rep["threshold"],
            "mean_ms_per_image": rep["mean_latency_ms"]}


def measure_speed(det: FaceDetector, frames: dict[str, np.ndarray], small: list[tuple[np.ndarray, np.ndarray]],
                  repeat: int) -> dict[str, Any]:
    out: dict[str, Any] = {f"median_ms_{name}": median_ms(lambda f=frame: det.detect(f), repeat)
                           for name, frame in frames.items()}
    out["photo_face_found"] = {name: len(det.detect(frame)) > 0 for name, frame in frames.items()}
    found = [heads_found(det.detect(frame).boxes, heads) for frame, heads in small]
    out.update(small_faces_found=float(np.mean(found)), small_faces_per_layout=found, small_faces_of=len(SMALL_HEADS_PX))
    return out


def rate_dict(r: RateAt) -> dict[str, Any]:
    return {"far": r.target, "tar": r.rate, "threshold": r.threshold, "far_measured": r.achieved, "note": r.note}


def measure_recognition(det: FaceDetector, embedder: FaceEmbedder, pairs: list[Pair], root: Path,
                        cfg: Config) -> dict[str, Any]:
    """Each photo's largest face embedded once (``EmbeddingCache``), pairs scored as ``eval verify`` scores them."""
    cache = EmbeddingCache(FaceAnalyzer(det, embedder), root)
    t = time.perf_counter()
    scores = pair_scores(cache, pairs, progress=sys.stderr.isatty())
    scores = np.where(np.isfinite(scores), scores, NO_FACE_SCORE)
    same = np.array([p.same for p in pairs])
    gen, imp = scores[same], scores[~same]
    at = rate_at(imp, cfg.threshold)
    return {"pairs_same": int(same.sum()), "pairs_different": int((~same).sum()), "photos": len(cache.cache),
            "photos_no_face": len(cache.failures), "tar_at_far": [rate_dict(tar_at_far(gen, imp, f)) for f in FARS],
            "at_threshold": {"threshold": cfg.threshold, "far_claimed": cfg.calibration.far,
                             "tar": float(np.mean(accepts(gen, cfg.threshold))), "far": at.rate,
                             "false_accepts": at.false_accepts, "different_pairs": at.trials,
                             "far_interval": [at.lower, at.upper]},
            "seconds": time.perf_counter() - t}


def run_row(choice: DetectorChoice, args: argparse.Namespace, embedder: FaceEmbedder | None, pairs: list[Pair] | None,
            frames: dict[str, np.ndarray], small: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    cfg = config_for(choice, args.threads)
    row: dict[str, Any] = {"detector": choice.label, **choice.section,
                           "score_threshold": cfg.detector.score_threshold, "nms_threshold": cfg.detector.nms_threshold}
    with open_detector(cfg) as det:
        if not args.skip_detection:
            log(f"{choice.label}: detection on {args.detection}")
            row["detection"] = measure_detection(det, args.detection)
        log(f"{choice.label}: speed ({args.repeat} calls per frame size)")
        row["speed"] = measure_speed(det, frames, small, args.repeat)
        if pairs is not None and embedder is not None:
            log(f"{choice.label}: recognition on {len(pairs)} pairs")
            row["recognition"] = measure_recognition(det, embedder, pairs, args.root, cfg)
    return row


# ------------------------------------------------------------------ output
def machine() -> dict[str, Any]:
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import mediapipe
        mp_version = mediapipe.__version__
    except ImportError:
        mp_version = None
    return {"cpu_count": os.cpu_count(), "cpu": cpu, "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__, "mediapipe": mp_version}


def command_line() -> str:
    return "python " + shlex.join([os.path.relpath(sys.argv[0]) if Path(sys.argv[0]).exists() else sys.argv[0],
                                   *sys.argv[1:]])


def fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


COLUMNS: list[tuple[str, str, Callable[[dict[str, Any]], str]]] = [
    # (header, the part of the row it needs, cell)
    ("detection rate", "detection", lambda d: f"{d['detection_rate']:.3f} ({d['found']}/{d['faces']})"),
    ("misses", "detection", lambda d: str(d["misses"])),
    ("false / image", "detection", lambda d: f"{d['false_per_image']:.2f}"),
    ("ms / image", "detection", lambda d: f"{d['mean_ms_per_image']:.1f}"),
    ("ms 1280x720", "speed", lambda s: f"{s['median_ms_1280x720']:.1f}"),
    ("ms 1920x1080", "speed", lambda s: f"{s['median_ms_1920x1080']:.1f}"),
    ("small faces found (of 6)", "speed", lambda s: f"{s['small_faces_found']:.1f}"),
    ("photos with no face", "recognition", lambda r: f"{r['photos_no_face']} of {r['photos']}"),
    ("TAR @ FAR 1e-2", "recognition", lambda r: fmt(r["tar_at_far"][0]["tar"], ".4f")),
    ("TAR @ FAR 1e-3", "recognition", lambda r: fmt(r["tar_at_far"][1]["tar"], ".4f")),
    ("TAR @ shipped threshold (FAR)", "recognition",
     lambda r: f"{r['at_threshold']['tar']:.4f} ({r['at_threshold']['far']:.2%})"),
]


def markdown(rows: list[dict[str, Any]]) -> str:
    cols = [c for c in COLUMNS if any(c[1] in r for r in rows)]
    lines = ["| detector | " + " | ".join(c[0] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in rows:
        lines.append(f"| {r['detector']} | " + " | ".join(c[2](r[c[1]]) if c[1] in r else "-" for c in cols) + " |")
    return "\n".join(lines)


def notes(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    """What the numbers were measured on, under the table."""
    out = ["thresholds: " + "; ".join(f"{r['detector']} score {r['score_threshold']}, NMS {r['nms_threshold']}"
                                      for r in rows)]
    first = rows[0]
    if "detection" in first:
        d = first["detection"]
        out.append(f"detection: {args.detection}: {d['images']} images, {d['faces']} labelled faces, IoU >= 0.5")
    out.append(f"speed: median of {args.repeat} calls after {WARMUP} warm-up; small faces: heads of "
               f"{SMALL_HEADS_PX[0]}-{SMALL_HEADS_PX[-1]} px in 1920x1080, mean of {SMALL_LAYOUTS} layouts")
    out.append("speed frames, the astronaut's face (~100 px) found at " + " / ".join(first["speed"]["photo_face_found"])
               + ": " + "; ".join(f"{r['detector']} " + "/".join("yes" if v else "no" for v in r["speed"]["photo_face_found"].values())
                                  for r in rows))
    if "recognition" in first:
        r = first["recognition"]
        a = r["at_threshold"]
        out.append(f"recognition: {args.pairs}: {r['pairs_same']} same + {r['pairs_different']} different pairs, "
                   f"{r['photos']} photos; shipped threshold {a['threshold']:.4f} (claims FAR {a['far_claimed']:g}, "
                   f"calibrated on RetinaFace alignment)")
        for row in rows:
            na = [x["note"] for x in row.get("recognition", {}).get("tar_at_far", []) if x["note"]]
            if na:
                out.append(f"{row['detector']}: {na[0]}")
                break
    return out


def report(result: dict[str, Any], args: argparse.Namespace) -> str:
    m = result["machine"]
    head = [f"$ {result['command']}",
            f"machine: {m['cpu_count']} CPUs (os.cpu_count()), {m['cpu']}, {m['system']}; python {m['python']}, "
            f"onnxruntime {m['onnxruntime']} ({args.threads} threads), mediapipe {m['mediapipe'] or 'not installed'}"]
    head += [f"skipped: {s}" for s in result["skipped"]]
    return "\n".join(head + ["", markdown(result["rows"]), ""] + notes(result["rows"], args)) if result["rows"] else "\n".join(head)


# ------------------------------------------------------------------ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--detection", type=Path, default=SHARED_FACES / "lab_dev" / "detection",
                    help="labelled detection set: images/ + ground_truth.json [default: ../shared/data/faces/lab_dev/detection]")
    ap.add_argument("--pairs", type=Path, default=SHARED_FACES / "wild_dev" / "pairs.txt",
                    help="LFW-format pairs file [default: ../shared/data/faces/wild_dev/pairs.txt]")
    ap.add_argument("--root", type=Path, default=SHARED_FACES / "wild_dev" / "ids",
                    help="photos of the pairs, ROOT/<name>/<i>.jpg [default: ../shared/data/faces/wild_dev/ids]")
    ap.add_argument("--repeat", type=int, default=20, help="timed detect calls per frame size [default: 20]")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads per model (RetinaFace, embedder) [default: 2]")
    ap.add_argument("--limit-pairs", type=int, default=None, metavar="N",
                    help="only the first N same-person and first N different-person pairs")
    ap.add_argument("--skip-detection", action="store_true", help="leave out the labelled detection set")
    ap.add_argument("--skip-recognition", action="store_true", help="leave out the pairs")
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    if args.limit_pairs is not None and args.limit_pairs < 1:
        ap.error("--limit-pairs must be at least 1")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    pairs = check_inputs(args)
    skipped, choices = [], list(CHOICES)
    why = mediapipe_missing()
    if why:
        skipped.append(f"mediapipe full, mediapipe short: mediapipe is not importable ({why})")
        choices = [c for c in choices if not c.needs_mediapipe]
    base = config_for(None, args.threads)
    prepare_models(base, choices)
    embedder = None
    if pairs is not None:
        from stream.loaders import pipeline_embedder

        embedder = pipeline_embedder(base, shared_cpu=False)  # what photo_analyzer(cfg).embedder is
    frames = {f"{w}x{h}": photo_frame(w, h) for w, h in ((1280, 720), (1920, 1080))}
    small = [small_faces_frame(seed) for seed in range(SMALL_LAYOUTS)]
    rows = [run_row(c, args, embedder, pairs, frames, small) for c in choices]
    return {"command": command_line(), "machine": machine(), "skipped": skipped,
            "recognition_profile": base.recognition.profile, "embedder": base.embedder_id, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t = time.perf_counter()
    try:
        result = run(args)
    except (EvalError, ModelError) as exc:  # ModelError covers engines.pinned_source.DownloadError
        print(f"compare_detectors: {' '.join(str(exc).split())}", file=sys.stderr)  # one line
        return 2
    result["seconds"] = time.perf_counter() - t
    print(json.dumps(result, indent=1) if args.json else report(result, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
