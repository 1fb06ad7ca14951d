#!/usr/bin/env python3
"""What moving a frame between two stage processes costs: the pipeline's ZeroMQ message against shared memory.

A benchmark, not a test: it prints a table. Why: frames are the only large thing that crosses a process boundary
(capture -> detect, and the frame a snapshot is cut from), and shared memory is the usual answer to "no copies of
full frames between stages". This measures whether it would pay here. Both sides run as real processes:

- ``zeromq``: the pipeline's own path, a ``messages.Frame`` encoded and sent zero-copy over a PUSH/PULL ``ipc://``
  socket (what ``Stage.send`` / ``recv`` do) and decoded into a numpy view at the receiver;
- ``shared memory``: the sender copies the frame into a ring of ``multiprocessing.shared_memory`` slots and sends
  only the slot number over the same kind of socket; the receiver takes a numpy view of the slot and copies it
  out (a stage must own its frame while it batches, since the slot is reused).

Each way sends the same frames, interleaved in rounds; the table gives the receiver's frames per second and the
CPU time per frame of both processes together (the cost that competes with detection on a 2-core machine).
Run::

    python tools/bench_transport.py [--frames 400] [--rounds 3]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SLOTS = 8  # the shared-memory ring: frames in flight between sender and receiver


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _send(kind: str, endpoint: str, shape: tuple[int, int, int], frames: int, ready, names: list[str]) -> None:
    import zmq
    from multiprocessing import shared_memory

    from stream.pipeline.messages import Frame

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDHWM, SLOTS // 2)  # never more in flight than the ring holds
    sock.connect(endpoint)
    img = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    shm = [shared_memory.SharedMemory(name=n) for n in names] if kind == "shared memory" else []
    views = [np.ndarray(shape, np.uint8, buffer=s.buf) for s in shm]
    ready.wait()
    t0 = _cpu()
    for i in range(frames):
        if kind == "zeromq":
            sock.send_multipart(Frame("cam", i, time.time(), None, i, image=img).encode(), copy=False)
        else:
            views[i % SLOTS][...] = img
            sock.send_multipart([b"slot", str(i % SLOTS).encode()])
    sock.send_multipart([b"end", f"{_cpu() - t0:.6f}".encode()])
    del views
    for s in shm:
        s.close()
    sock.close(linger=5000)
    ctx.term()


def one_run(kind: str, shape: tuple[int, int, int], frames: int, tmp: Path) -> tuple[float, float]:
    """(receiver fps, CPU ms per frame of both processes) for one way of moving ``frames`` frames."""
    import zmq
    from multiprocessing import shared_memory

    from stream.pipeline.messages import decode

    endpoint = f"ipc://{tmp}/bench-{kind.replace(' ', '-')}.sock"
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.RCVHWM, SLOTS // 2)
    sock.bind(endpoint)
    size = int(np.prod(shape))
    shm = [shared_memory.SharedMemory(create=True, size=size) for _ in range(SLOTS)] if kind == "shared memory" else []
    views = [np.ndarray(shape, np.uint8, buffer=s.buf) for s in shm]
    ready = mp.get_context("spawn").Event()
    proc = mp.get_context("spawn").Process(target=_send, args=(kind, endpoint, shape, frames, ready, [s.name for s in shm]))
    proc.start()
    time.sleep(1.5)  # the sender imported and connected
    t0, c0, n = time.perf_counter(), _cpu(), 0
    ready.set()
    sender_cpu = 0.0
    total = 0
    while True:
        parts = sock.recv_multipart(copy=False)
        head = parts[0].bytes
        if head == b"end":
            sender_cpu = float(parts[1].bytes)
            break
        if head == b"slot":
            frame = views[int(parts[1].bytes)].copy()
        else:
            frame = decode(parts).image
        total += int(frame[0, 0, 0])  # touch it
        n += 1
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    proc.join(10)
    del views
    for s in shm:
        s.close()
        s.unlink()
    sock.close(linger=0)
    ctx.term()
    return n / wall, 1000 * (cpu + sender_cpu) / max(n, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=400, help="frames per run")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    args = ap.parse_args()
    kinds = ("zeromq", "shared memory")
    print(f"{os.cpu_count()} CPUs; {args.frames} frames per run, median of {args.rounds} interleaved rounds\n")
    print("| frame | way | receiver fps | CPU ms per frame (both processes) | CPU vs zeromq |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for shape in ((720, 1280, 3), (1080, 1920, 3)):
            res: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
            for _ in range(args.rounds):
                for k in kinds:
                    res[k].append(one_run(k, shape, args.frames, Path(tmp)))
            base = statistics.median(c for _, c in res["zeromq"])
            for k in kinds:
                fps = statistics.median(f for f, _ in res[k])
                cpu = statistics.median(c for _, c in res[k])
                print(f"| {shape[1]}x{shape[0]} | {k} | {fps:.0f} | {cpu:.2f} | {cpu / base:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
