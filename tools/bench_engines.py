#!/usr/bin/env python3
"""Backend benchmark: embedder faces/s at batch 1, 8, 32, 128 and detector fps at a fixed 640x640 input,
for every backend available here (ONNX Runtime always; TensorRT FP16 and FP32 when it imports and a GPU is
present). A benchmark, not a test: prints a table, with TensorRT's speed-up over ONNX Runtime measured in
the same run. Run: ``python tools/bench_engines.py [--repeat 20] [--threads 0]``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_models import timeit  # noqa: E402  (tools/ is on sys.path when run as a script)

from engines.backends.registry import create_backend, tensorrt_available  # noqa: E402
from engines.detector import Detector  # noqa: E402
from engines.embedder import CHIP_SIZE, Embedder  # noqa: E402
from engines.factory import detector_profile, embedder_profile  # noqa: E402
from engines.model_store import DETECTOR_FILE, EMBEDDER_FILE, ModelStore  # noqa: E402
from stream.config import load_config  # noqa: E402

BATCHES = (1, 8, 32, 128)
DET_INPUT = (640, 640)


def best_ms(fn, repeat: int) -> float:
    """Median wall time of ``fn`` in ms after warm-up (the first calls allocate)."""
    return float(np.median(timeit(fn, repeat)))


def measure(engine: str, precision: str, threads: int, repeat: int, store: ModelStore) -> dict:
    rng = np.random.default_rng(0)
    chips = rng.integers(0, 255, (max(BATCHES), CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8)
    frame = rng.integers(0, 255, (*DET_INPUT, 3), dtype=np.uint8)
    row: dict = {}
    emb_opts = {"precision": precision, "profile": embedder_profile(max(BATCHES), opt_batch=32)}
    embedder = Embedder(create_backend(store.path(EMBEDDER_FILE), engine, threads=threads, trt_options=emb_opts),
                        max_batch=max(BATCHES))
    for b in BATCHES:
        ms = best_ms(lambda b=b: embedder.embed(chips[:b]), repeat)
        row[f"emb{b}"] = b / ms * 1000
    det_opts = {"precision": precision, "profile": detector_profile(8, 1, DET_INPUT)}
    backend = create_backend(store.path(DETECTOR_FILE), engine, threads=threads, trt_options=det_opts)
    d = load_config().detector
    detector = Detector(backend, score_threshold=d.score_threshold, nms_threshold=d.nms_threshold, max_side=d.max_side,
                        fixed_input=DET_INPUT)
    row["det1"] = 1000 / best_ms(lambda: detector.detect(frame), repeat)
    row["det8"] = 8000 / best_ms(lambda: detector.detect_batch([frame] * 8), max(3, repeat // 4))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0 = all cores)")
    args = ap.parse_args()
    store = ModelStore()
    store.prepare()
    runs = [("onnxruntime", "fp32")]
    ok, why = tensorrt_available()
    if ok:
        runs += [("tensorrt", "fp16"), ("tensorrt", "fp32")]
    rows = {f"{e} {p}" if e == "tensorrt" else e: measure(e, p, args.threads, args.repeat, store) for e, p in runs}
    print(f"TensorRT: {'available' if ok else 'not measured'} ({why})\n")
    cols = [f"emb{b}" for b in BATCHES] + ["det1", "det8"]
    print("| backend | " + " | ".join(f"embed b{b} faces/s" for b in BATCHES) + " | detect 640x640 b1 fps | detect b8 fps |")
    print("|---|" + "---|" * len(cols))
    for name, r in rows.items():
        print(f"| {name} | " + " | ".join(f"{r[c]:.0f}" for c in cols) + " |")
    base = rows["onnxruntime"]
    for name, r in rows.items():
        if name != "onnxruntime":
            print(f"\n{name} / onnxruntime: embed b32 {r['emb32'] / base['emb32']:.1f}x, detect b1 {r['det1'] / base['det1']:.1f}x")


if __name__ == "__main__":
    main()
