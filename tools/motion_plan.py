#!/usr/bin/env python3
"""What the motion gate does with a video, frame by frame, in one process: a diagnostic, not a benchmark of the
pipeline (that is ``tools/bench_pipeline.py``). Prints how many frames were skipped, detected on regions and
detected whole, the mean region size, and the milliseconds per frame of each step (decode, the 320 px copy, the
scene-cut check, the motion gate, detection), so an operator can see what a camera's footage costs and tune
``motion.*`` on their own clips::

    python tools/motion_plan.py VIDEO [-c CONFIG] [--threads 2]
"""
from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402

from stream.config import load_config  # noqa: E402
from stream.media.native_logs import quiet_native_logs  # noqa: E402
from stream.loaders import pipeline_detector  # noqa: E402
from stream.pipeline.capture import VideoError, open_recorded  # noqa: E402
from stream.pipeline.motion import MotionGate, small_copy  # noqa: E402
from stream.pipeline.tracker import IouTracker, SceneCuts  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("video")
    ap.add_argument("-c", "--config", default=None, help="YAML config (its motion, detector and tracking sections)")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads of the detector")
    args = ap.parse_args(argv)
    quiet_native_logs()
    cfg = load_config(args.config, overrides={"engines": {"engine": "onnxruntime", "threads": args.threads}})
    try:
        cap = open_recorded(args.video)
    except VideoError as exc:
        print(f"error: {args.video}: {exc}", file=sys.stderr)
        return 2
    det = pipeline_detector(cfg, live=False)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    gate = MotionGate(cfg.motion)
    tracker, cuts = IouTracker(cfg.tracking.max_gap_s), SceneCuts(cfg.tracking.cut_threshold, cfg.tracking.max_gap_s)
    ms: dict[str, float] = collections.defaultdict(float)
    kinds: collections.Counter = collections.Counter()
    region_px = 0
    n = 0
    w = h = 0

    def timed(key: str, fn, *a):
        t0 = time.perf_counter()
        out = fn(*a)
        ms[key] += (time.perf_counter() - t0) * 1000
        return out

    while True:
        ok, img = timed("decode", cap.read)
        if not ok:
            break
        t = n / fps
        n += 1
        h, w = img.shape[:2]
        small = timed("320 px copy", small_copy, img)
        if timed("scene-cut check", cuts.check, "v", small, t):
            tracker.end_camera("v")
            gate.reset()
        plan = timed("motion gate", gate.plan, img, t, tracker.predicted("v", t), small)
        kinds[plan.kind] += 1
        if plan.kind == "skip":
            continue
        if plan.kind == "full":
            faces = timed("detect", det.detect, img)
        else:
            r = plan.regions
            region_px += int(((r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])).sum())
            faces = timed("detect", det.detect_regions, img, r)
        keep = faces.scores >= cfg.quality.min_det_score
        if keep.any():
            tracker.update("v", faces.boxes[keep], t)
    cap.release()
    if n == 0:
        print(f"error: {args.video}: no frame could be decoded", file=sys.stderr)
        return 2
    print(f"{args.video}: {n} frames, {w}x{h} at {fps:g} fps")
    print("| frames skipped | detected on regions | detected whole | mean region MP (whole frame) |")
    print("|---|---|---|---|")
    mean_mp = region_px / max(1, kinds["regions"]) / 1e6
    print(f"| {kinds['skip']} | {kinds['regions']} | {kinds['full']} | {mean_mp:.2f} ({w * h / 1e6:.2f}) |")
    print("\n| step | ms per frame |\n|---|---|")
    for k, v in ms.items():
        print(f"| {k} | {v / n:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
