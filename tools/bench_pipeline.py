#!/usr/bin/env python3
"""Pipeline benchmark: recorded throughput and efficiency, live capture->alert latency, overload.

A benchmark, not a test: it prints tables. Everything runs through the real stage processes and ZeroMQ
sockets, on clips generated here (the scikit-image astronaut moving over a background), so the numbers
are reproducible on any machine. Run (about 10 minutes on 2 cores)::

    python tools/bench_pipeline.py [--threads 1] [--repeat 2] [--live-seconds 40] [--cameras N] [--stages]
                                   [--skip-recorded|--skip-live]

Recorded surveillance scene (the default recorded part), 720p and 1080p: a still room with sensor noise and two
lighting changes, the enrolled face entering, walking, pausing, standing still, small and large, two at once
(``scene_actors``), scanned with the motion-gated detector and with the detector on every frame, interleaved
(A B A B) ``--repeat`` times: end-to-end fps (median, spread), appearances alerted, time from each appearance's
start to its first alert, alerts on nobody, and the 1-minute load average before and after each run (a run during
which it moved by more than 1.0 is flagged: the machine's load changed under it).
Recorded, each stage alone (``--stages``: the moving-face clip through ``facewatch scan``), for 720p and 1080p:
  * end to end: frames / (wall of an N-frame scan - wall of a 1-frame scan), so process start-up and
    model loading are not counted as throughput;
  * each stage alone, in the same run: the same stage process fed with the previous stage's real output
    (captured by this script), timed from its first output to its end-of-stream (warm-up left out);
  * efficiency = end-to-end fps / fps of the slowest stage alone; every figure is the best of ``--repeat``.
Live (``facewatch run`` on replayed 720p clips, cooldown 0, a face entering every 3 s so each entry is a
new track and a new alert): capture->alert latency p50/p99 from the event store, for 1, 2 and 4 cameras at
the configured fps, and an overload run asking for 4x the frames the detector can process alone; drops
are read from the stages' own metrics: "dropped (send)" counts frames a full socket refused, "dropped (stale +
overload)" frames the detector discarded as superseded by a newer frame of their camera or as over its budget.
"""
from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stream.media.clips import Actor, Appearance, astronaut_head, render_clip, render_scene  # noqa: E402
from stream.config import ENDPOINTS, Config, load_config  # noqa: E402
from stream.pipeline.capture import CaptureStage  # noqa: E402
from stream.pipeline.detect import DetectStage  # noqa: E402
from stream.pipeline.embed import EmbedStage  # noqa: E402
from stream.pipeline.match import MatchStage  # noqa: E402
from stream.pipeline.messages import Decision, decode  # noqa: E402
from stream.pipeline.stage import Stage, StageSpec, stage_main  # noqa: E402
from stream.scan.collect import CollectStage  # noqa: E402

SOURCE_FPS = 25.0


# ----------------------------------------------------------------------------- clips and config
def make_clip(path: Path, size: tuple[int, int], seconds: float, cycle_s: float | None = None) -> Path:
    """A clip with the astronaut crossing the frame; with ``cycle_s`` the face leaves and re-enters."""
    head = astronaut_head()
    height = int(220 * size[1] / 720)
    if cycle_s:
        apps = [Appearance(head, t, t + cycle_s - 0.5, height) for t in np.arange(0.2, seconds - cycle_s + 0.5, cycle_s)]
    else:
        apps = [Appearance(head, 0.0, seconds / 2 - 0.2, height), Appearance(head, seconds / 2, seconds, height)]
    return camera_encoded(render_clip(path.with_suffix(".raw.mp4"), apps, size=size, fps=SOURCE_FPS, duration_s=seconds),
                          path)


def camera_encoded(raw: Path, path: Path) -> Path:
    """``raw`` re-encoded to ``path`` as H.264 without B-frames, like a camera (``raw`` is removed); the mp4v
    ``raw`` itself, renamed, where there is no ffmpeg."""
    if shutil.which("ffmpeg"):
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(raw), "-c:v", "libx264", "-bf", "0", "-g", "50",
                        "-preset", "veryfast", "-pix_fmt", "yuv420p", str(path)], check=True)
        raw.unlink()
        return path
    return raw.rename(path)


def base_config(work: Path, gallery: Path, threads: int) -> Config:
    return load_config(overrides={
        "data_dir": str(work), "engines": {"engine": "onnxruntime", "threads": threads},
        "matching": {"gallery": str(gallery)}, "metrics": {"enabled": False},
        "alerts": {"cooldown_s": 0, "sinks": {"console": False}},
    })


# ----------------------------------------------------------------------------- recorded
def scan_wall(cfg: Config, clip: Path, gallery: Path) -> float:
    from stream.scan.run import scan_videos

    t = time.perf_counter()
    scan_videos(cfg, [str(clip)], 1, str(gallery), False, progress=False, timeout_s=900)
    return time.perf_counter() - t


class Alone:
    """One stage process on its own: this script feeds its input socket and drains its output socket."""

    def __init__(self, cfg: Config, stage: type[Stage], options: dict) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="fw-bench-"))
        self.ep = {k: f"ipc://{self.dir}/{k}" for k in ENDPOINTS}
        self.ctx = zmq.Context()
        self.control = self.ctx.socket(zmq.PULL)
        self.control.bind(self.ep["control"])
        self.spec = StageSpec(stage, cfg.model_dump(mode="json"), self.ep, live=False, options=options)
        self.proc = mp.get_context("spawn").Process(target=stage_main, args=(self.spec,), daemon=True)

    def run(self, in_key: str | None, out_key: str | None, feed: list[list[bytes]], done,
            side_key: str | None = None, side: list[list[bytes]] | None = None) -> tuple[list[list[bytes]], float]:
        """Feed ``feed`` to ``in_key``, drain ``out_key`` until ``done``; what the stage sends to ``side_key`` (capture's
        per-file ``SourceSummary`` goes straight to the last stage) is appended to ``side``. A stage that stops
        making progress for 120 s raises instead of hanging the benchmark."""
        sink = side_sock = None
        if side_key:
            side_sock = self.ctx.socket(zmq.PULL)
            side_sock.setsockopt(zmq.RCVHWM, 0)
            side_sock.bind(self.ep[side_key])
        if out_key:
            sink = self.ctx.socket(zmq.PULL)
            sink.setsockopt(zmq.RCVHWM, 0)
            sink.bind(self.ep[out_key])
        src = None
        if in_key:
            src = self.ctx.socket(zmq.PUSH)
            src.setsockopt(zmq.SNDHWM, 32)
            src.connect(self.ep[in_key])
        self.proc.start()
        if in_key:  # wait until the stage has loaded its models (first heartbeat), then start the clock
            if not self.control.poll(120_000):
                raise RuntimeError(f"stage {self.spec.kind} did not start")
            feeder = threading.Thread(target=lambda: [src.send_multipart(p) for p in feed], daemon=True)
            t0 = time.perf_counter()
            feeder.start()
        out: list[list[bytes]] = []
        t_first = None
        deadline = time.monotonic() + 120
        try:
            while True:
                while side_sock is not None and side is not None and side_sock.poll(0):
                    side.append(side_sock.recv_multipart())
                if sink is not None:
                    if not sink.poll(120_000):
                        raise RuntimeError(f"stage {self.spec.kind} stalled")
                    parts = sink.recv_multipart()
                    if t_first is None:
                        t_first = time.perf_counter()
                    out.append(parts)
                    if done(parts):
                        break
                elif done(None):
                    break
                elif time.monotonic() > deadline:
                    raise RuntimeError(f"stage {self.spec.kind} did not finish within 120 s")
                else:
                    time.sleep(0.002)
            t_end = time.perf_counter()
            while side_sock is not None and side is not None and side_sock.poll(200):
                side.append(side_sock.recv_multipart())
        finally:
            self.proc.terminate()
            self.proc.join(10)
            self.ctx.destroy(linger=0)
            shutil.rmtree(self.dir, ignore_errors=True)
        # Timed from the first output on (the first input is the clip's first frame, which has a face), so a
        # stage's one-off warm-up (ONNX Runtime plans memory on its first run at a new shape) is left out,
        # as the 1-frame scan leaves it out of the end-to-end figure. Without an output: from the first input.
        return out, t_end - (t_first if t_first is not None else t0)


def is_eos(parts: list[bytes]) -> bool:
    m = decode(parts)
    return bool(m.eos) if not isinstance(m, Decision) else m.kind == "eos"


def recorded(cfg: Config, work: Path, gallery: Path, size: tuple[int, int], frames: int, repeat: int) -> dict:
    """Best of ``repeat`` runs for the pipeline and for each stage alone (shared machines are noisy)."""
    clip = make_clip(work / f"rec{size[1]}.mp4", size, frames / SOURCE_FPS)
    one = make_clip(work / f"one{size[1]}.mp4", size, 1 / SOURCE_FPS)
    t_one = min(scan_wall(cfg, one, gallery) for _ in range(repeat))
    t_all = min(scan_wall(cfg, clip, gallery) for _ in range(repeat))
    e2e = (frames - 1) / (t_all - t_one)
    stages: dict[str, float] = {}
    for _ in range(repeat):
        for name, fps in stages_alone(cfg, work, gallery, clip, frames).items():
            stages[name] = max(fps, stages.get(name, 0.0))
    slowest = min(stages, key=stages.get)
    return {"size": f"{size[0]}x{size[1]}", "frames": frames, "e2e_fps": e2e, "startup_s": t_one, "stages": stages,
            "slowest": slowest, "efficiency": e2e / stages[slowest]}


def stages_alone(cfg: Config, work: Path, gallery: Path, clip: Path, frames: int) -> dict[str, float]:
    """Each stage process on its own, fed with the previous stage's real output, in video frames/s."""
    files = [("bench", str(clip))]
    report = work / "report.json"
    opts = {"files": files, "every": 1, "report_path": str(report), "observations": False, "gallery": str(gallery)}
    stages = {}
    summaries: list[list[bytes]] = []  # capture's SourceSummary per file, which the collect stage waits for
    frames_msgs, secs = Alone(cfg, CaptureStage, {"camera": {"name": "scan"}, "files": files, "every": 1,
                                               "instance": "capture"}).run(None, "frames", [], is_eos,
                                                                           "decisions", summaries)
    stages["capture (decode)"] = (frames - 1) / secs
    faces_msgs, secs = Alone(cfg, DetectStage, {}).run("frames", "faces", frames_msgs, is_eos)
    stages["detect"] = (frames - 1) / secs
    del frames_msgs
    emb_msgs, secs = Alone(cfg, EmbedStage, {}).run("faces", "embeddings", faces_msgs, is_eos)
    stages["embed"] = (frames - 1) / secs
    del faces_msgs
    dec_msgs, secs = Alone(cfg, MatchStage, opts).run("embeddings", "decisions", emb_msgs, is_eos)
    stages["match"] = (frames - 1) / secs
    del emb_msgs
    report.unlink(missing_ok=True)
    if not summaries:
        raise RuntimeError("capture sent no SourceSummary: the collect stage would wait for it forever")
    _, secs = Alone(cfg, CollectStage, opts).run("decisions", None, dec_msgs + summaries, lambda _p: report.exists())
    stages["collect"] = frames / secs
    return stages


# ----------------------------------------------------------------------------- surveillance scene: gated vs every frame
SCENE_S = 24.0
LIGHTING = [(10.0, 0.7), (23.0, 1.0)]  # (t, gain): lamps dimmed, then back


def scene_actors(height: int) -> list[Actor]:
    """Who passes in the scene (heights as shares of the frame height): entering, walking, pausing, standing still,
    leaving; small and large; two at once."""
    head = astronaut_head()
    small = cv2.flip(head, 1)  # the mirrored face: another look of the enrolled person
    return [
        Actor(head, int(0.34 * height), [(1.0, 0.05, 0.45), (2.5, 0.45, 0.45), (3.5, 0.45, 0.45), (5.0, 0.95, 0.45)]),
        Actor(small, int(0.13 * height), [(6.0, 0.95, 0.3), (9.0, 0.05, 0.35)]),  # small: a ~50 px face at 720p
        Actor(head, int(0.24 * height), [(11.0, 0.05, 0.3), (14.0, 0.95, 0.3)]),  # two at once, opposite ways
        Actor(small, int(0.24 * height), [(11.2, 0.95, 0.72), (14.2, 0.05, 0.72)]),
        Actor(head, int(0.30 * height), [(16.0, 0.05, 0.5), (17.5, 0.6, 0.5), (21.0, 0.6, 0.5), (22.0, 0.95, 0.5)]),
    ]


def make_scene(path: Path, size: tuple[int, int]) -> tuple[Path, list[Actor]]:
    actors = scene_actors(size[1])
    raw = render_scene(path.with_suffix(".raw.mp4"), actors, size=size, fps=SOURCE_FPS, duration_s=SCENE_S,
                       lighting=LIGHTING)
    return camera_encoded(raw, path), actors


def appearance_recall(events, actors: list[Actor], size: tuple[int, int]) -> tuple[int, list[float], int]:
    """(appearances alerted, time from each found appearance's start to its first alert, alerts on no
    appearance): an alert belongs to the appearance whose head box holds its face box's centre at its time."""
    first: dict[int, float] = {}
    stray = 0
    for e in events:
        cx, cy = (e.box[0] + e.box[2]) / 2, (e.box[1] + e.box[3]) / 2
        owner = None
        for k, a in enumerate(actors):
            b = a.box(e.video_time, size)
            if b is not None and b[0] <= cx <= b[2] and b[1] <= cy <= b[3] and e.identity == "astronaut":
                owner = k
        if owner is None:
            stray += 1
        elif owner not in first or e.video_time < first[owner]:
            first[owner] = e.video_time
    return len(first), [first[k] - actors[k].start_s for k in sorted(first)], stray


def scene_run(cfg: Config, clip: Path, gallery: Path, gated: bool, actors: list[Actor], size: tuple[int, int],
              t_one: float) -> dict:
    from stream.scan.run import scan_videos

    c = cfg.model_copy(deep=True)
    c.motion.enabled = gated
    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    report = scan_videos(c, [str(clip)], 1, str(gallery), False, progress=False, timeout_s=900)
    wall = time.perf_counter() - t
    v = report.videos[0]
    found, ttfa, stray = appearance_recall(v.events, actors, size)
    return {"gated": gated, "wall": wall, "fps": (v.frames_processed - 1) / max(wall - t_one, 1e-6), "found": found,
            "ttfa": ttfa, "stray": stray, "load": (load0, os.getloadavg()[0]), "complete": v.status == "complete"}


def scene(cfg: Config, work: Path, gallery: Path, size: tuple[int, int], repeat: int,
          modes: tuple[bool, ...] = (True, False)) -> list[dict]:
    """The scene scanned gated and every frame, interleaved (A B A B ...), ``repeat`` times each."""
    clip, actors = make_scene(work / f"scene{size[1]}.mp4", size)
    one = make_clip(work / f"one{size[1]}.mp4", size, 1 / SOURCE_FPS)
    t_one = min(scan_wall(cfg, one, gallery) for _ in range(2))
    runs = []
    for _ in range(repeat):
        for gated in modes:
            runs.append(scene_run(cfg, clip, gallery, gated, actors, size, t_one) | {"t_one": t_one})
    return runs


def print_scene(rows: list[tuple[tuple[int, int], list[dict]]], n_actors: int) -> None:
    print("| video | detector | runs | end-to-end fps (spread) | appearances alerted | time to first alert mean / max s "
          "| alerts on nobody | load 1-min before -> after |")
    print("|---|---|---|---|---|---|---|---|")
    for size, runs in rows:
        for gated in (True, False):
            rs = [r for r in runs if r["gated"] == gated]
            if not rs:
                continue
            fps = [r["fps"] for r in rs]
            found = {r["found"] for r in rs}
            ttfa = [x for r in rs for x in r["ttfa"]]
            moved = any(abs(r["load"][1] - r["load"][0]) > 1.0 for r in rs)
            print(f"| {size[0]}x{size[1]} | {'motion-gated' if gated else 'every frame'} | {len(rs)} | "
                  f"{np.median(fps):.1f} ({min(fps):.1f}-{max(fps):.1f}) | {'/'.join(map(str, sorted(found)))} of {n_actors} | "
                  f"{np.mean(ttfa):.2f} / {max(ttfa):.2f} | {sum(r['stray'] for r in rs)} | "
                  + ", ".join(f"{a:.1f}->{b:.1f}" for a, b in (r["load"] for r in rs))
                  + (" **load changed**" if moved else "") + " |")
        if len({r["gated"] for r in runs}) < 2:
            continue
        g = np.median([r["fps"] for r in runs if r["gated"]])
        e = np.median([r["fps"] for r in runs if not r["gated"]])
        print(f"| {size[0]}x{size[1]} | gated / every frame | | **{g / e:.2f}x** | | | | |")
    print(f"\nscene: {SCENE_S:g} s at {SOURCE_FPS:g} fps, {n_actors} appearances of the enrolled face (entering, walking, "
          f"a pause, standing still 3.5 s, small ~{int(0.13 * 720 * 0.55)} px face at 720p, two at once), sensor noise, "
          f"lighting {LIGHTING}; fps = (frames - 1) / (scan wall - start-up wall of a 1-frame scan, "
          f"{rows[0][1][0]['t_one']:.1f} s at {rows[0][0][1]}p); median of the runs, spread in brackets; "
          "a run whose load average moved by over 1.0 is flagged.")


# ----------------------------------------------------------------------------- live
def live(cfg: Config, work: Path, clip: Path, n_cams: int, fps: float, seconds: float, warmup_s: float = 6.0) -> dict:
    from stream.store.events import EventStore
    from stream.pipeline.supervisor import Supervisor

    run_dir = work / f"live-{n_cams}x{fps:g}"
    data = cfg.model_dump(mode="json")
    data.update(data_dir=str(run_dir), cameras=[{"name": f"cam{i}", "source": str(clip), "fps": fps, "replay": True}
                                                for i in range(n_cams)])
    c = Config.model_validate(data)
    sup = Supervisor(c, live=True, serve_metrics=False)
    t_start = time.time()
    sup.start()
    try:
        end = time.monotonic() + warmup_s + seconds
        while time.monotonic() < end:
            sup.poll(0.25)
        time.sleep(0.6)
        sup.poll(0.6)  # the last heartbeats
    finally:
        sup.stop()
    store = EventStore(c.resolve(c.alerts.store))
    evs = [e for e in store.events() if e.ts_capture >= t_start + warmup_s]
    store.close()
    lat = np.array([e.latency_ms for e in evs]) if evs else np.array([np.nan])
    m = {ch.name: ch.metrics for ch in sup.children}
    cap = [v for k, v in m.items() if k.startswith("capture:")]
    det = m.get("detect", {})
    return {"cameras": n_cams, "fps": fps, "demand_fps": n_cams * fps, "alerts": len(evs),
            "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)), "max": float(np.max(lat)),
            "sent": sum(v.get("frames_out", 0) for v in cap),
            "detect_frames": det.get("frames_in", 0),
            "detect_fps": det.get("frames_in", 0) / (time.time() - t_start),
            "dropped": sum(v.get("dropped", 0) for v in m.values()),
            "dropped_stale": sum(v.get("dropped_stale", 0) + v.get("dropped_overload", 0) for v in m.values()),
            "restarts": sum(ch.total_restarts for ch in sup.children)}


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None, help="engines.threads for every stage (default: the config's)")
    ap.add_argument("--frames", type=int, default=200, help="frames in each recorded clip")
    ap.add_argument("--repeat", type=int, default=2, help="recorded: best of this many runs of everything")
    ap.add_argument("--live-seconds", type=float, default=40.0, help="measured seconds per live run (after warm-up)")
    ap.add_argument("--fps", type=float, default=None, help="live camera fps (default: the config's camera default, 5)")
    ap.add_argument("--skip-recorded", action="store_true")
    ap.add_argument("--skip-live", action="store_true")
    ap.add_argument("--stages", action="store_true",
                    help="recorded: also the moving-face clip through each stage alone (efficiency; a few minutes more)")
    ap.add_argument("--cameras", type=int, default=None,
                    help="live: only this many cameras at the camera fps (no ladder, no overload row)")
    args = ap.parse_args()

    from engines.model_store import ModelStore
    from stream.loaders import photo_analyzer
    from stream.config import CameraConfig
    from stream.store.gallery import Gallery

    ModelStore().prepare()
    work = Path(tempfile.mkdtemp(prefix="fw-bench-pipeline-"))
    gallery = work / "gallery"
    face = photo_analyzer(load_config(overrides={"engines": {"engine": "onnxruntime"}})).analyze(astronaut_head())[0]
    Gallery(gallery).enroll("astronaut", face.embedding[None])
    threads = args.threads if args.threads is not None else load_config().engines.threads
    cfg = base_config(work, gallery, threads)
    print(f"facewatch pipeline benchmark: engines.threads={threads}, {mp.cpu_count()} CPUs, "
          f"detect batch {cfg.detect_batch.max_batch}/{cfg.detect_batch.max_wait_ms:g} ms, "
          f"embed batch {cfg.embed_batch.max_batch}/{cfg.embed_batch.max_wait_ms:g} ms")
    capacity = None
    try:
        if not args.skip_recorded:
            print("\n## Recorded surveillance scene (scan): motion-gated detector against every frame, same run\n")
            sizes = ((1280, 720), (1920, 1080))
            rows_scene = [(size, scene(cfg, work, gallery, size, args.repeat)) for size in sizes]
            print_scene(rows_scene, len(scene_actors(720)))
        if not args.skip_recorded and args.stages:
            print("\n## Recorded video, each stage alone (scan, backpressure, no frame dropped)\n")
            rows = [recorded(cfg, work, gallery, size, args.frames, args.repeat) for size in ((1280, 720), (1920, 1080))]
            names = list(rows[0]["stages"])
            print("| video | frames | end-to-end fps | " + " | ".join(f"{n} alone" for n in names) + " | efficiency |")
            print("|---|---|---|" + "---|" * len(names) + "---|")
            for r in rows:
                print(f"| {r['size']} | {r['frames']} | {r['e2e_fps']:.1f} | "
                      + " | ".join(f"{r['stages'][n]:.1f}" for n in names)
                      + f" | **{r['efficiency']:.2f}** (÷ {r['slowest']}) |")
            print(f"\nfps = video frames per second, best of {args.repeat}; start-up of a scan (1-frame clip) {rows[0]['startup_s']:.1f} s, not counted.")
            capacity = rows[0]["stages"]["detect"]
        if not args.skip_live:
            fps = args.fps or CameraConfig(name="x", source="x").fps
            clip = make_clip(work / "live720.mp4", (1280, 720), 18.0, cycle_s=3.0)
            if capacity is None:
                capacity = 1000 / 70  # rough 720p detect capacity on 2 cores when the recorded part is skipped
            over_fps = round(min(SOURCE_FPS, capacity), 1)
            over_cams = max(1, math.ceil(4 * capacity / over_fps - 0.05))
            print(f"\n## Live 720p cameras (replayed clips), capture->alert latency, {args.live_seconds:g} s each\n")
            print("| cameras x fps | demand fps | detect fps | alerts | p50 ms | p99 ms | max ms | dropped (send) | dropped (stale + overload) |")
            print("|---|---|---|---|---|---|---|---|---|")
            results = []
            rows = [(args.cameras, fps)] if args.cameras else [(1, fps), (2, fps), (4, fps), (over_cams, over_fps)]
            for n, f in rows:
                r = live(cfg, work, clip, n, f, args.live_seconds)
                results.append(r)
                tag = " (overload)" if (n, f) == (over_cams, over_fps) else ""
                print(f"| {n} x {f:g}{tag} | {r['demand_fps']:.0f} | {r['detect_fps']:.1f} | {r['alerts']} | {r['p50']:.0f} | "
                      f"{r['p99']:.0f} | {r['max']:.0f} | {r['dropped']:.0f} | {r['dropped_stale']:.0f} |", flush=True)
            base, over = results[0], results[-1]
            if args.cameras:
                return
            print(f"\noverload: demand {over['demand_fps']:.0f} fps = {over['demand_fps'] / capacity:.1f}x the detector's "
                  f"capacity alone ({capacity:.1f} fps); p99 {over['p99']:.0f} ms = {over['p99'] / base['p99']:.2f}x the "
                  f"unloaded p99 ({base['p99']:.0f} ms, 1 camera at {fps:g} fps)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
