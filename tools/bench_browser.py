#!/usr/bin/env python3
"""Capture -> visible-in-the-browser latency: real RTSP cameras, ``facewatch run`` with its HTTP server, and the
web UI's Live page in headless Chromium, measured in the page.

A benchmark, not a test: it prints a markdown table. For each configuration (1 and 4 cameras by default):

* one GStreamer RTSP server per camera (``tools/rtsp_server.py`` under the system Python), looping a 720p
  H.264 clip without B-frames where the scikit-image astronaut enters every ``--cycle`` seconds and leaves
  again (each entry is a new track, and with ``alerts.cooldown_s: 0`` a new alert); each camera's clip is
  shifted by cycle/N so the cameras' faces do not all arrive at the same instant;
* ``facewatch run`` with ``api.enabled: true`` (the HTTP server in the supervisor's process), the astronaut
  enrolled with ``facewatch gallery enroll``, cameras ``alert_on: watchlist``;
* Debian's Chromium (``/usr/bin/chromium``, driven by Playwright; Playwright's own browsers are never used) on
  ``/#/live``. For every alert card the page renders it records, after a requestAnimationFrame,
  ``Date.now()/1000 - event.ts_capture`` in ``window.facewatchLatencies``: capture -> card on screen. This script
  also wraps the page's EventSource (an init script, the UI itself is untouched) to note when each ``alert``
  message arrived, to split the browser path into "store -> SSE message in the page" and "message -> on screen".

``ts_capture`` is the wall-clock time the capture stage grabbed the frame, on this same machine, so the page's
clock and the pipeline's agree. The pipeline's own figure is each event's stored ``latency_ms`` (capture ->
alert decided, stamped just before the snapshots are written and the event is stored), for the same events.
Only events captured inside the measured window count (after the first alert in the page and ``--warmup``
seconds); the page is given a few seconds after the window for the last ones to arrive. Run (about 3
minutes with the defaults)::

    python tools/bench_browser.py [--seconds 60] [--cameras 1,4] [--fps 5] [--threads 0] [--cycle 3]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from stream.media.clips import Appearance, astronaut_head, render_clip  # noqa: E402

FACEWATCH = [sys.executable, "-m", "stream.cli"]
CHROMIUM = "/usr/bin/chromium"
SOURCE_FPS = 25

# Notes, in the page, when each live `alert` message arrived (before the UI's own listener runs).
RECEIPT_HOOK = """
(() => {
  window.__fwReceived = [];
  const Native = window.EventSource;
  window.EventSource = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('alert', (m) => {
        const now = Date.now();
        try {
          const ev = JSON.parse(m.data);
          window.__fwReceived.push({id: ev.id, ms: now - ev.ts_capture * 1000});
        } catch (e) { /* the UI reports malformed messages itself */ }
      });
    }
  };
})();
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- clips and cameras
def make_h264(path: Path, size: tuple[int, int], seconds: float, cycle_s: float, phase_s: float) -> Path:
    """Raw H.264 (Annex-B, no B-frames, a key frame every second) of the astronaut entering every ``cycle_s``
    seconds (``seconds`` must be an even multiple of it), the first time at ``phase_s`` + 0.2, and leaving
    0.5 s before the next entry. It loops seamlessly: a crossing cut by the clip's end goes on at its start."""
    head = astronaut_head()
    height = int(220 * size[1] / 720)
    never = Appearance(head, -2.0, -1.0, height)  # render_clip alternates rows by list index: a filler keeps parity
    apps: list[Appearance] = []
    for k in range(int(round(seconds / cycle_s))):
        start = 0.2 + phase_s + k * cycle_s
        parts = [(start, start + cycle_s - 0.5)]
        if parts[0][1] > seconds:  # the wrapped rest, at the clip's start (a negative start keeps the motion)
            parts.append((start - seconds, start + cycle_s - 0.5 - seconds))
        for s, e in parts:
            if len(apps) % 2 != k % 2:
                apps.append(never)
            apps.append(Appearance(head, s, e, height))
    raw = render_clip(path.with_suffix(".raw.mp4"), apps, size=size, fps=SOURCE_FPS, duration_s=seconds)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(raw), "-c:v", "libx264", "-bf", "0", "-g", str(SOURCE_FPS),
                    "-preset", "veryfast", "-pix_fmt", "yuv420p", "-f", "h264", str(path)], check=True)
    raw.unlink()
    return path


class RtspServer:
    def __init__(self, h264: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(["/usr/bin/python3", str(REPO / "tools" / "rtsp_server.py"), "--file", str(h264),
                                      "--port", str(self.port), "--path", "/cam", "--fps", str(SOURCE_FPS)],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            self.kill()
            raise SystemExit(f"RTSP server did not start: {line!r}")
        self.url = line.split()[1]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class FacewatchRun:
    """``facewatch -v -c CFG run`` as a subprocess; its HTTP server's URL from the "serving on" line."""

    def __init__(self, cfg: Path) -> None:
        self.log = cfg.with_suffix(".run.log")
        self.fh = open(self.log, "w")
        self.proc = subprocess.Popen(FACEWATCH + ["-v", "-c", str(cfg), "run"], cwd=REPO, stdout=self.fh,
                                     stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_serving(self, timeout: float = 120.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = re.search(r"facewatch: serving on (http://\S+)", self.text())
            if m:
                return m.group(1).rstrip("/")
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise SystemExit("facewatch run did not serve:\n" + self.text()[-3000:])

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.fh.close()
        return self.proc.returncode


# ----------------------------------------------------------------------------- one configuration
def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def stored_events(url: str, t0: float, t1: float) -> list[dict]:
    out: list[dict] = []
    with httpx.Client(base_url=url, timeout=30) as c:
        while True:
            r = c.get("/api/events", params={"since": t0, "until": t1, "source": "live", "limit": 500, "offset": len(out)})
            r.raise_for_status()
            page = r.json()["events"]
            out += page
            if len(page) < 500:
                return [e for e in out if t0 <= e["ts_capture"] < t1]


def measure(browser, work: Path, n_cams: int, args: argparse.Namespace, clips: list[Path]) -> dict:
    run_dir = work / f"cams{n_cams}"
    run_dir.mkdir()
    servers = [RtspServer(clips[i]) for i in range(n_cams)]
    cfg = {"data_dir": str(run_dir), "engines": {"engine": "onnxruntime"},
           "matching": {"gallery": str(work / "gallery")},
           "cameras": [{"name": f"cam{i}", "source": s.url, "fps": args.fps, "alert_on": "watchlist"} for i, s in enumerate(servers)],
           "alerts": {"cooldown_s": 0, "sinks": {"console": False}},
           "api": {"enabled": True, "port": free_port()},
           "metrics": {"enabled": False}}
    if args.threads is not None:
        cfg["engines"]["threads"] = args.threads
    cfg_path = run_dir / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    run = FacewatchRun(cfg_path)
    ctx = None
    errors: list[str] = []
    try:
        url = run.wait_serving()
        ctx = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=url)
        ctx.add_init_script(RECEIPT_HOOK)
        page = ctx.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto("/#/live")
        # functions, not expressions: the page's CSP (script-src 'self') forbids eval, which Playwright uses for those
        page.wait_for_function("() => document.getElementById('stream-indicator').textContent.includes('LIVE')",
                               timeout=30_000)
        page.wait_for_function("() => window.facewatchLatencies && window.facewatchLatencies.length > 0", timeout=180_000,
                               polling=500)
        page.wait_for_timeout(args.warmup * 1000)
        load0 = os.getloadavg()[0]
        t0 = time.time()
        page.wait_for_timeout(args.seconds * 1000)
        t1 = time.time()
        load1 = os.getloadavg()[0]
        page.wait_for_timeout(args.grace * 1000)  # events captured before t1 still on their way
        shown = {x["id"]: x["ms"] for x in page.evaluate("() => window.facewatchLatencies")}
        received = {x["id"]: x["ms"] for x in page.evaluate("() => window.__fwReceived")}
        events = stored_events(url, t0, t1)
    finally:
        if ctx is not None:
            ctx.close()
        code = run.stop()
        for s in servers:
            s.kill()
    if code not in (0, None):
        print(f"warning: facewatch run exited with {code}:\n{run.text()[-2000:]}", file=sys.stderr)
    pipe = [e["latency_ms"] for e in events]
    on_screen = [shown[e["id"]] for e in events if e["id"] in shown]
    recv = [received[e["id"]] for e in events if e["id"] in received]
    added = [shown[e["id"]] - e["latency_ms"] for e in events if e["id"] in shown]
    to_page = [received[e["id"]] - e["latency_ms"] for e in events if e["id"] in received]
    render = [shown[e["id"]] - received[e["id"]] for e in events if e["id"] in shown and e["id"] in received]
    slowest = sorted(((shown.get(e["id"], float("nan")), e["latency_ms"], e["camera"]) for e in events),
                     key=lambda x: -x[1])[:3]
    return {"cameras": n_cams, "fps": args.fps, "stored": len(events), "shown": len(on_screen), "slowest": slowest,
            "per_cam": {c: sum(1 for e in events if e["camera"] == c) for c in sorted({e["camera"] for e in events})},
            "pipe": pipe, "screen": on_screen, "recv": recv, "added": added, "to_page": to_page, "render": render,
            "load": (load0, load1), "errors": errors}


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="measured seconds per configuration")
    ap.add_argument("--cameras", default="1,4", help="comma-separated camera counts, one configuration each")
    ap.add_argument("--fps", type=float, default=5.0, help="frames per second processed per camera (cameras[].fps)")
    ap.add_argument("--threads", type=int, default=None, help="engines.threads (default: the config's)")
    ap.add_argument("--cycle", type=float, default=3.0, help="seconds between the face's entries in each clip")
    ap.add_argument("--size", default="1280x720", help="camera resolution WxH")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds after the first alert in the page before measuring")
    ap.add_argument("--grace", type=float, default=3.0, help="seconds after the window for its last alerts to arrive")
    args = ap.parse_args()
    cams = [int(x) for x in args.cameras.split(",") if x.strip()]
    size = tuple(int(v) for v in args.size.lower().split("x"))
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"needs Debian's Chromium at {CHROMIUM} (apt install chromium)")
    if not shutil.which("ffmpeg"):
        raise SystemExit("needs ffmpeg (H.264 clips for the RTSP servers)")

    from playwright.sync_api import sync_playwright

    from engines.model_store import ModelStore
    from stream.config import load_config

    ModelStore().prepare()
    work = Path(tempfile.mkdtemp(prefix="fw-bench-browser-"))
    try:
        photo = work / "astronaut.jpg"
        from skimage import data

        cv2.imwrite(str(photo), np.ascontiguousarray(data.astronaut()[:, :, ::-1]))
        gcfg = work / "enroll.yaml"
        gcfg.write_text(yaml.safe_dump({"data_dir": str(work), "engines": {"engine": "onnxruntime"},
                                        "matching": {"gallery": str(work / "gallery")}}))
        res = subprocess.run(FACEWATCH + ["-c", str(gcfg), "gallery", "enroll", "astronaut", str(photo)], cwd=REPO,
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"facewatch gallery enroll failed ({res.returncode}): {res.stderr.strip()}")
        n_max = max(cams)
        clip_s = args.cycle * 6
        clips = [make_h264(work / f"clip{i}.h264", size, clip_s, args.cycle, i * args.cycle / n_max) for i in range(n_max)]
        threads = args.threads if args.threads is not None else load_config().engines.threads
        print(f"facewatch capture -> browser benchmark: {os.cpu_count()} CPUs, engines.threads={threads}, "
              f"{size[0]}x{size[1]} RTSP cameras (H.264, no B-frames) at {args.fps:g} fps processed, a face entering "
              f"every {args.cycle:g} s per camera, cooldown 0, {args.seconds:g} s per row; Chromium headless on /#/live",
              flush=True)
        rows = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM)
            try:
                for n in cams:
                    r = measure(browser, work, n, args, clips)
                    rows.append(r)
                    print(f"  {n} camera(s): {r['stored']} alerts stored {r['per_cam']}, {r['shown']} shown in the page, "
                          f"load average {r['load'][0]:.1f} -> {r['load'][1]:.1f}"
                          + (f", page errors: {r['errors']}" if r["errors"] else "")
                          + "; slowest by the pipeline (pipeline / on screen ms): "
                          + ", ".join(f"{pl:.0f} / {sc:.0f} ({cam})" for sc, pl, cam in r["slowest"]), flush=True)
            finally:
                browser.close()

        print("\n| cameras x fps | alerts | shown in page | capture->alert (pipeline) p50 / p99 ms | capture->SSE message "
              "in page p50 / p99 ms | **capture->on screen p50 ms** | **p99 ms** | max ms | browser path adds p50 / p99 ms |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['cameras']} x {r['fps']:g} | {r['stored']} | {r['shown']} | {pct(r['pipe'], 50):.0f} / {pct(r['pipe'], 99):.0f} | "
                  f"{pct(r['recv'], 50):.0f} / {pct(r['recv'], 99):.0f} | **{pct(r['screen'], 50):.0f}** | **{pct(r['screen'], 99):.0f}** | "
                  f"{max(r['screen']) if r['screen'] else float('nan'):.0f} | {pct(r['added'], 50):.0f} / {pct(r['added'], 99):.0f} |")
        print("\nWhere the browser path's time goes (per event, ms, p50 / p99): "
              + "; ".join(f"{r['cameras']} camera(s): store + SSE poll + network {pct(r['to_page'], 50):.0f} / "
                          f"{pct(r['to_page'], 99):.0f}, message -> card on screen {pct(r['render'], 50):.0f} / "
                          f"{pct(r['render'], 99):.0f}" for r in rows))
        one = next((r for r in rows if r["cameras"] == 1), None)
        if one and one["screen"]:
            p99 = pct(one["screen"], 99)
            print(f"\nTarget: capture -> browser p99 <= 300 ms at one camera: {p99:.0f} ms, "
                  f"{'met' if p99 <= 300 else 'NOT met'} ({len(one['screen'])} alerts).")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
