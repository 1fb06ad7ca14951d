#!/usr/bin/env python3
"""Decoding speed with 1, 2 and OpenCV's default number of FFmpeg decoder threads, on camera-like H.264 clips.

A benchmark, not a test: it prints a table. Why: the capture stage decodes with OpenCV's FFmpeg backend, which
threads the decoder by itself (``CAP_PROP_N_THREADS`` defaults to the number of cores), and this shows what that
is worth and how far decoding is from being what limits a scan. The clips are generated here (the astronaut
crossing a still background, H.264 without B-frames, as ``tools/bench_pipeline.py`` makes them); rounds are
interleaved, and the table gives the median fps over them. Run::

    python tools/bench_decode.py [--seconds 8] [--rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def decode_fps(clip: Path, threads: int | None) -> float:
    """Frames per second decoding every frame of ``clip`` (``threads`` None: OpenCV's default)."""
    import cv2

    params = [] if threads is None else [cv2.CAP_PROP_N_THREADS, threads]
    cap = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG, params)
    n, t = 0, time.perf_counter()
    while cap.grab() and cap.retrieve()[0]:
        n += 1
    dt = time.perf_counter() - t
    cap.release()
    if n == 0:
        raise RuntimeError(f"{clip}: no frame decoded")
    return n / dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each generated clip (25 fps)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    args = ap.parse_args()
    import os

    from bench_pipeline import make_clip

    settings: list[int | None] = [1, 2, None]
    print(f"{os.cpu_count()} CPUs; median decode fps over {args.rounds} interleaved rounds (H.264, no B-frames, 25 fps)\n")
    print("| clip | 1 thread | 2 threads | OpenCV default | default / 1 thread |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in ((1280, 720), (1920, 1080)):
            clip = make_clip(Path(tmp) / f"decode{size[1]}.mp4", size, args.seconds)
            fps: dict[int | None, list[float]] = {s: [] for s in settings}
            for _ in range(args.rounds):
                for s in settings:
                    fps[s].append(decode_fps(clip, s))
            med = {s: statistics.median(v) for s, v in fps.items()}
            print(f"| {size[0]}x{size[1]} | {med[1]:.0f} | {med[2]:.0f} | {med[None]:.0f} | {med[None] / med[1]:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
