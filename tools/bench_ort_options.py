#!/usr/bin/env python3
"""ONNX Runtime session options on this machine: which thread count, spinning, graph optimisation and execution
mode the detector and the default embedder run fastest with, alone and beside a busy neighbour.

A benchmark, not a test: it prints a table. Why it exists: ``engines/backends/onnxruntime.py`` and
``stream.loaders.live_threads`` choose the options the pipeline runs with (2 intra-op threads live, idle threads
that do not spin, every graph optimisation), and those choices should rest on a measurement on the target
machine, repeated when the machine changes. Each option set gets its own ``InferenceSession`` on the same model
file, swapped into the project's own detector and embedder, so the pre- and post-processing timed around the
network is exactly the pipeline's. Rounds are interleaved (A B C ... A B C ...) so a change of machine load hits
every option alike; the table gives the median and the spread (25th-75th percentile) and the ratio to the
shipped setting measured in the same run. ``--neighbour`` adds a second process that runs the embedder in a loop
on its own thread pool, as the embed stage does beside the detect stage in the live pipeline: spinning threads
that look fastest alone can be slowest there. Run::

    python tools/bench_ort_options.py [--rounds 5] [--calls 10] [--neighbour]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@dataclass(frozen=True)
class Options:
    """One set of session options (what ``OnnxRuntimeBackend`` sets, and the alternatives)."""

    label: str
    threads: int
    spin: bool = False
    level: str = "ORT_ENABLE_ALL"
    parallel: bool = False
    arena: bool = True

    def session(self, path: Path):
        import onnxruntime as ort

        o = ort.SessionOptions()
        o.graph_optimization_level = getattr(ort.GraphOptimizationLevel, self.level)
        o.intra_op_num_threads = self.threads
        o.inter_op_num_threads = 2 if self.parallel else 1
        if self.parallel:
            o.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        if not self.spin:
            o.add_session_config_entry("session.intra_op.allow_spinning", "0")
        o.enable_cpu_mem_arena = self.arena
        o.log_severity_level = 3
        return ort.InferenceSession(str(path), sess_options=o, providers=["CPUExecutionProvider"])


SHIPPED = Options("shipped live: 2 threads, no spin, all optimisations", 2)
GRID = (
    SHIPPED,
    Options("1 thread, no spin", 1),
    Options("2 threads, spinning", 2, spin=True),
    Options("2 threads, extended optimisations", 2, level="ORT_ENABLE_EXTENDED"),
    Options("2 threads, basic optimisations", 2, level="ORT_ENABLE_BASIC"),
    Options("2 threads, parallel execution", 2, parallel=True),
    Options("2 threads, no memory arena", 2, arena=False),
)


def _neighbour(stop) -> None:  # pragma: no cover - a child process
    """The embed stage's load: the default embedder on batches of 8 crops, in a loop, 2 threads, no spin."""
    from stream.config import load_config
    from stream.loaders import pipeline_embedder

    cfg = load_config(overrides={"engines": {"engine": "onnxruntime", "threads": 2}})
    emb = pipeline_embedder(cfg, shared_cpu=True)
    crops = np.random.default_rng(0).integers(0, 255, (8, 256, 256, 3), dtype=np.uint8)
    while not stop.is_set():
        emb.embed_crops(crops)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds over every option set")
    ap.add_argument("--calls", type=int, default=10, help="timed calls per option set per round")
    ap.add_argument("--neighbour", action="store_true", help="a second process running the embedder meanwhile")
    args = ap.parse_args()

    import cv2
    import onnxruntime as ort

    from engines.face_model import face_crops
    from engines.files import ModelError
    from stream.config import load_config
    from stream.loaders import pipeline_detector, pipeline_embedder
    from stream.media.clips import astronaut_head

    cfg = load_config(overrides={"engines": {"engine": "onnxruntime", "threads": 2}})
    try:
        det = pipeline_detector(cfg, shared_cpu=True)
        emb = pipeline_embedder(cfg, shared_cpu=True)
    except ModelError as exc:
        print(f"bench_ort_options: {exc}", file=sys.stderr)
        return 2
    member = emb.members[0]
    frame = np.full((720, 1280, 3), 90, np.uint8)
    head = astronaut_head()
    frame[200:200 + head.shape[0], 500:500 + head.shape[1]] = head
    faces = det.detect(frame)
    if len(faces) == 0:
        print("bench_ort_options: no face found in the benchmark frame", file=sys.stderr)
        return 2
    crops = np.repeat(face_crops(frame, faces.landmarks)[:1], 8, axis=0)
    region = np.array([[400, 100, 400 + 420, 100 + 420]])
    work = {
        "detect 720p frame": lambda: det.detect_batch([frame]),
        "detect 420 px region": lambda: det.detect_regions(frame, region),
        "embed fast, per face at batch 8": lambda: member.embed_crops(crops),
    }
    per_face = {"embed fast, per face at batch 8": 8}
    sessions = {o: (o.session(det.backend.path), o.session(member.backend.path)) for o in GRID}

    stop = mp.get_context("spawn").Event() if args.neighbour else None
    proc = None
    if args.neighbour:
        proc = mp.get_context("spawn").Process(target=_neighbour, args=(stop,), daemon=True)
        proc.start()
        time.sleep(4.0)  # its models loaded and running
    times: dict[tuple[str, str], list[float]] = {}
    try:
        for _ in range(args.rounds):
            for o in GRID:
                det.backend.session, member.backend.session = sessions[o]
                for name, fn in work.items():
                    fn()  # one untimed call: the swap's first run allocates
                    for _ in range(args.calls):
                        t = time.perf_counter()
                        fn()
                        times.setdefault((o.label, name), []).append((time.perf_counter() - t) * 1000 / per_face.get(name, 1))
    finally:
        if proc is not None:
            stop.set()
            proc.join(5)

    print(f"ONNX Runtime {ort.__version__}, {mp.cpu_count()} CPUs, {args.rounds} interleaved rounds x {args.calls} calls"
          + (", a neighbour process running the embedder meanwhile" if args.neighbour else ", alone"))
    print()
    print("| options | " + " | ".join(f"{n} ms (p25-p75)" for n in work) + " | " + " | ".join(f"ratio, {n}" for n in work) + " |")
    print("|---|" + "---|" * (2 * len(work)))
    base = {n: statistics.median(times[(SHIPPED.label, n)]) for n in work}
    for o in GRID:
        cells, ratios = [], []
        for n in work:
            v = times[(o.label, n)]
            q = np.percentile(v, [25, 50, 75])
            cells.append(f"{q[1]:.1f} ({q[0]:.1f}-{q[2]:.1f})")
            ratios.append(f"{q[1] / base[n]:.2f}")
        print(f"| {o.label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
