#!/usr/bin/env python3
"""CPU latency of the models: the detector at 640x480, and the embedding cost per face of each recognition profile
(and of each member model of a fused profile) at batch 1, 8 and 32.

A benchmark, not a test: prints a table, and for each profile the per-face ratio against ``fast`` measured in the
same run (machines are noisy; the ratio is what carries over). Run::

    python tools/bench_models.py [--threads 2] [--repeat 30] [--profiles fast,accurate,arcface]

A profile whose model files are missing (``facewatch models prepare --profile accurate``) is reported and skipped.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def timeit(fn, repeat: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0 = all cores)")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--engine", default="onnxruntime")
    ap.add_argument("--profiles", default="fast,accurate,arcface", help="comma-separated recognition profiles")
    args = ap.parse_args()

    import cv2
    from skimage import data

    from engines.face_model import face_crop
    from engines.files import ModelError
    from stream.config import load_config
    from stream.loaders import photo_analyzer

    img = cv2.resize(np.ascontiguousarray(data.astronaut()[:, :, ::-1]), (640, 480))
    rows: list[tuple[str, int, float, float, float]] = []
    per_face: dict[str, float] = {}
    first = True
    for prof in [p.strip() for p in args.profiles.split(",") if p.strip()]:
        try:
            an = photo_analyzer(load_config(overrides={"engines": {"engine": args.engine, "threads": args.threads},
                                                      "recognition": {"profile": prof}}))
        except (ModelError, ValueError) as exc:
            print(f"# {prof}: skipped: {exc}", file=sys.stderr)
            continue
        faces = an.detector.detect(img)
        crop = face_crop(img, faces.landmarks[0])
        if first:  # the detector is the same for every profile
            t = timeit(lambda: an.detector.detect(img), args.repeat)
            rows.append(("detector 640x480 (incl. pre/post)", 1, statistics.median(t), np.percentile(t, 90), statistics.median(t)))
            first = False
        emb = an.embedder
        targets = [(f"{prof} ({emb.model_id})", emb)]
        if len(getattr(emb, "members", [])) > 1:
            targets += [(f"  member {m.name}", m) for m in emb.members]
        for label, e in targets:
            for bs in (1, 8, 32):
                crops = np.repeat(crop[None], bs, axis=0)
                t = timeit(lambda: e.embed_crops(crops), max(5, args.repeat // (1 + bs // 8)))
                rows.append((f"{label} batch {bs}", bs, statistics.median(t), np.percentile(t, 90), statistics.median(t) / bs))
                if e is emb and bs == 8:
                    per_face[prof] = statistics.median(t) / bs
    print(f"engine={args.engine} threads={args.threads or 'default'}")
    print(f"| {'what':60} | batch | p50 ms | p90 ms | ms/face |")
    print(f"|{'-' * 62}|------:|-------:|-------:|--------:|")
    for name, bs, p50, p90, per in rows:
        print(f"| {name:60} | {bs:5d} | {p50:6.2f} | {p90:6.2f} | {per:7.2f} |")
    if "fast" in per_face:
        for prof, ms in per_face.items():
            print(f"embedding cost per face at batch 8, {prof}: {ms:.2f} ms ({ms / per_face['fast']:.2f}x fast)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
