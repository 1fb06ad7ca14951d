#!/usr/bin/env python3
"""CPU latency of the two models: detector at 640x480 and the embedder per face at batch 1 and 32.

A benchmark, not a test: prints a table. Run: ``python tools/bench_models.py [--threads 2] [--repeat 30]``.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def timeit(fn, repeat: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0 = all cores)")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--engine", default="onnxruntime")
    args = ap.parse_args()

    from skimage import data

    import cv2
    from engines.embedder import Embedder
    from stream.config import load_config
    from stream.loaders import photo_analyzer

    an = photo_analyzer(load_config(overrides={"engines": {"engine": args.engine, "threads": args.threads}}))
    img = cv2.resize(np.ascontiguousarray(data.astronaut()[:, :, ::-1]), (640, 480))
    faces = an.detector.detect(img)
    chip = Embedder.align(img, faces.landmarks[0])
    rows = []
    t = timeit(lambda: an.detector.detect(img), args.repeat)
    rows.append(("detector 640x480 (incl. pre/post)", 1, statistics.median(t), np.percentile(t, 90), statistics.median(t)))
    blob, _ = an.detector.preprocess([img])
    t = timeit(lambda: an.detector.backend.run({an.detector.input_name: blob}), args.repeat)
    rows.append(("detector 640x480 (network only)", 1, statistics.median(t), np.percentile(t, 90), statistics.median(t)))
    for bs in (1, 8, 32):
        chips = np.repeat(chip[None], bs, axis=0)
        an.embedder.max_batch = bs
        t = timeit(lambda: an.embedder.embed(chips), max(5, args.repeat // (1 + bs // 8)))
        rows.append((f"embedder batch {bs}", bs, statistics.median(t), np.percentile(t, 90), statistics.median(t) / bs))
    print(f"engine={an.detector.backend.name} threads={args.threads or 'default'}")
    print(f"{'what':38} {'batch':>5} {'p50 ms':>9} {'p90 ms':>9} {'ms/item':>9}")
    for name, bs, p50, p90, per in rows:
        print(f"{name:38} {bs:5d} {p50:9.2f} {p90:9.2f} {per:9.2f}")


if __name__ == "__main__":
    main()
