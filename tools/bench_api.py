#!/usr/bin/env python3
"""HTTP API benchmark: ``POST /api/identify`` and ``GET /api/events?limit=50`` against a real ``facewatch serve``.

A benchmark, not a test: it prints a markdown table. Everything is real: ``facewatch gallery enroll`` enrolls the
scikit-image astronaut into a fresh gallery, 10,000 events are put in a fresh event store with
``EventStore.add`` (as the alert stage stores them, each with a face embedding), ``facewatch serve`` runs as a
subprocess (uvicorn), and this script drives it with httpx from N client threads (each its own connection,
keep-alive) for a fixed time per row. Run (about 2 minutes with the defaults)::

    python tools/bench_api.py [--seconds 15] [--clients 1,2,4] [--threads 0] [--events 10000]

Baseline, in the same run and on the same machine (half before and half after the HTTP rows of the same
request, pooled): the same work in this process without HTTP, one call at a time: for identify, ``decode_upload`` (the server's upload decoder) + ``photo_analyzer(cfg).analyze`` +
``Gallery.search``; for events, ``EventStore.query`` + the same JSON view. "HTTP overhead" is the p50 at one
client divided by the baseline p50 (and the difference in ms). The server runs inference one photo at a time
(one model instance behind a lock), so more clients do not add throughput beyond what the cores give one
analyzer; they show the queueing. The client threads run in this process and take CPU from the same 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from stream.config import Config, load_config  # noqa: E402

FACEWATCH = [sys.executable, "-m", "stream.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def astronaut_bgr() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])


def query_jpeg(img: np.ndarray) -> bytes:
    """The astronaut (512x512) scaled to 480x480 on a 640x480 grey canvas: a webcam-sized photo."""
    canvas = np.full((480, 640, 3), 128, np.uint8)
    canvas[:, 80:560] = cv2.resize(img, (480, 480), interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def write_config(path: Path, work: Path, threads: int | None) -> Path:
    cfg: dict = {"data_dir": str(work), "engines": {"engine": "onnxruntime"}, "matching": {"gallery": str(work / "gallery")},
                 "metrics": {"enabled": False}, "alerts": {"sinks": {"console": False}}}
    if threads is not None:
        cfg["engines"]["threads"] = threads
    path.write_text(yaml.safe_dump(cfg))
    return path


def fill_store(path: Path, n: int) -> float:
    """``n`` live events over the last day, on 4 cameras, each with a (random unit) face embedding; seconds taken."""
    from stream.records import Event
    from stream.store.events import EventStore

    rng = np.random.default_rng(13)
    store = EventStore(path)
    t0 = time.time()
    start = t0 - 86400
    try:
        for i in range(n):
            ts = start + i * 86400 / n
            emb = rng.normal(size=128).astype(np.float32)
            emb /= np.linalg.norm(emb)
            known = i % 3 == 0
            store.add(Event(ts=ts, ts_capture=ts - 0.08, camera=f"cam{i % 4}", kind="watchlist" if known else "unknown",
                            identity="astronaut" if known else None, score=0.97 if known else 0.4, threshold=0.9508,
                            track_id=i, latency_ms=80.0, box=[100.0, 120.0, 220.0, 260.0],
                            unknown_id=None if known else 1 + i % 500), embedding=emb)
    finally:
        store.close()
    return time.time() - t0


class Server:
    """``facewatch -c CFG serve`` on a free port, ready once it says "serving on"."""

    def __init__(self, cfg: Path) -> None:
        self.port = free_port()
        self.log = cfg.with_suffix(".serve.log")
        self.fh = open(self.log, "w")
        self.proc = subprocess.Popen(FACEWATCH + ["-c", str(cfg), "serve", "--port", str(self.port)], cwd=REPO,
                                     stdout=self.fh, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.url = f"http://127.0.0.1:{self.port}"
        end = time.monotonic() + 90
        while not re.search(r"facewatch: serving on", self.log.read_text()):
            if self.proc.poll() is not None or time.monotonic() > end:
                raise SystemExit("facewatch serve did not start:\n" + self.log.read_text()[-3000:])
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.fh.close()


# ----------------------------------------------------------------------------- measuring
def stats(lat_s: list[float], ok: int, errors: int, seconds: float) -> dict:
    a = np.array(lat_s) * 1000 if lat_s else np.array([np.nan])
    return {"n": ok, "errors": errors, "rps": ok / seconds, "p50": float(np.percentile(a, 50)),
            "p99": float(np.percentile(a, 99)), "max": float(np.max(a))}


def drive(url: str, request, n_clients: int, seconds: float, check) -> dict:
    """``n_clients`` threads, each with its own keep-alive connection, sending ``request(client)`` back to back
    for ``seconds``; latency of every completed request; non-2xx, bad bodies and exceptions are errors."""
    lat: list[list[float]] = [[] for _ in range(n_clients)]
    errs = [0] * n_clients
    first_err: list[str] = []
    start = threading.Barrier(n_clients + 1)
    deadline = [0.0]

    def worker(i: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            request(c)  # connect and warm this connection, not timed
            start.wait()
            while True:
                t = time.perf_counter()
                if t >= deadline[0]:
                    break
                try:
                    r = request(c)
                    good = r.status_code == 200 and check(r)
                    if not good and not first_err:
                        first_err.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as exc:
                    good = False
                    if not first_err:
                        first_err.append(repr(exc))
                if good:
                    lat[i].append(time.perf_counter() - t)
                else:
                    errs[i] += 1

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n_clients)]
    for th in threads:
        th.start()
    deadline[0] = time.perf_counter() + 1e9
    start.wait()
    t0 = time.perf_counter()
    deadline[0] = t0 + seconds
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0  # includes the requests in flight at the deadline
    out = stats([x for xs in lat for x in xs], sum(len(x) for x in lat), sum(errs), wall)
    out["first_error"] = first_err[0] if first_err else None
    return out


class InProcess:
    """The baseline: ``fn`` called back to back in this process, one call at a time. It is measured in two
    halves, one before and one after the HTTP rows of the same request, and the samples pooled, so a change in
    this shared machine's load during the run weighs on both sides alike."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.lat: list[float] = []
        self.wall = 0.0
        fn()  # warm-up (the first inference plans memory), not timed

    def measure(self, seconds: float) -> None:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            t = time.perf_counter()
            self.fn()
            self.lat.append(time.perf_counter() - t)
        self.wall += time.perf_counter() - t0

    def result(self) -> dict:
        return stats(self.lat, len(self.lat), 0, self.wall)


def identify_in_process(cfg: Config, jpeg: bytes):
    from stream.loaders import photo_analyzer
    from stream.media.images import decode_upload
    from stream.store.gallery import Gallery

    analyzer = photo_analyzer(cfg)
    gallery = Gallery(cfg.resolve(cfg.matching.gallery), readonly=True)

    def once() -> None:
        faces = analyzer.analyze(decode_upload(jpeg, "astronaut.jpg"))
        cands = gallery.search(np.stack([f.embedding for f in faces]), k=cfg.matching.top_k)
        assert cands[0].accepted(cfg.threshold) == "astronaut", cands
    return once, gallery.close


def events_in_process(cfg: Config):
    from stream.api.views import event_json
    from stream.store.events import EventFilter, EventStore

    store = EventStore(cfg.resolve(cfg.alerts.store))

    def once() -> None:
        evs, total = store.query(EventFilter(), 50, 0)
        json.dumps({"events": [event_json(e) for e in evs], "total": total, "limit": 50, "offset": 0})
    return once, store.close


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=15.0, help="measured seconds per row")
    ap.add_argument("--clients", default="1,2,4", help="comma-separated numbers of concurrent client threads")
    ap.add_argument("--threads", type=int, default=None, help="engines.threads of the server (default: the config's)")
    ap.add_argument("--events", type=int, default=10_000, help="events in the store for GET /api/events")
    args = ap.parse_args()
    clients = [int(x) for x in args.clients.split(",") if x.strip()]

    from engines.model_store import ModelStore

    ModelStore().prepare()
    work = Path(tempfile.mkdtemp(prefix="fw-bench-api-"))
    server = None
    try:
        cfg_path = write_config(work / "cfg.yaml", work, args.threads)
        cfg = load_config(cfg_path)
        img = astronaut_bgr()
        cv2.imwrite(str(work / "astronaut.jpg"), img)
        jpeg = query_jpeg(img)
        res = subprocess.run(FACEWATCH + ["-c", str(cfg_path), "gallery", "enroll", "astronaut", str(work / "astronaut.jpg")],
                             cwd=REPO, capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"facewatch gallery enroll failed ({res.returncode}): {res.stderr.strip()}")
        fill_s = fill_store(cfg.resolve(cfg.alerts.store), args.events)
        print(f"facewatch API benchmark: {os.cpu_count()} CPUs, engines.threads={cfg.engines.threads}, "
              f"{args.seconds:g} s per row, query photo 640x480 JPEG {len(jpeg) / 1024:.0f} KiB, "
              f"{args.events} events in the store (stored in {fill_s:.1f} s)", flush=True)

        load0 = os.getloadavg()[0]
        server = Server(cfg_path)

        def identify(c: httpx.Client) -> httpx.Response:
            return c.post("/api/identify", files={"file": ("astronaut.jpg", jpeg, "image/jpeg")})

        def identify_ok(r: httpx.Response) -> bool:
            faces = r.json()["faces"]
            return len(faces) == 1 and faces[0]["identity"] == "astronaut"

        def events(c: httpx.Client) -> httpx.Response:
            return c.get("/api/events", params={"limit": 50})

        def events_ok(r: httpx.Response) -> bool:
            body = r.json()
            return len(body["events"]) == 50 and body["total"] == args.events

        rows = []
        for name, req, check, local in (("POST /api/identify", identify, identify_ok, identify_in_process(cfg, jpeg)),
                                        ("GET /api/events?limit=50", events, events_ok, events_in_process(cfg))):
            once, close = local
            base = InProcess(once)
            base.measure(args.seconds / 2)
            http_rows = []
            for n in clients:
                r = drive(server.url, req, n, args.seconds, check)
                http_rows.append((f"HTTP, {n} client{'s' if n > 1 else ''}", r))
                if r["first_error"]:
                    print(f"  {name} x{n}: first error: {r['first_error']}", file=sys.stderr)
            base.measure(args.seconds / 2)
            close()
            b = base.result()
            rows.append((name, "in-process, no HTTP (baseline)", b, None))
            rows += [(name, how, r, b) for how, r in http_rows]

        print("\n| request | how | req/s | p50 ms | p99 ms | max ms | errors | HTTP overhead at p50 |")
        print("|---|---|---|---|---|---|---|---|")
        for name, how, r, base in rows:
            over = ""
            if base is not None:
                over = f"{r['p50'] / base['p50']:.2f}x (+{r['p50'] - base['p50']:.1f} ms)"
            print(f"| {name} | {how} | {r['rps']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['max']:.1f} | "
                  f"{r['errors']} | {over} |")
        print(f"\nHTTP overhead = p50 over HTTP / p50 of the same work in-process, one call at a time (baseline measured "
              f"half before, half after the HTTP rows). Clients are threads of this script (httpx, keep-alive), on the "
              f"same {os.cpu_count()} cores as the server. Load average at start {load0:.1f}, at end {os.getloadavg()[0]:.1f}.")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
