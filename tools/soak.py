#!/usr/bin/env python3
"""Soak benchmark: the live pipeline for N minutes against real RTSP servers while faults are injected.

A benchmark, not a test: it prints tables (every ``--report-every`` seconds and at the end) and exits 0
unless the harness itself broke (exit 2; 130 on Ctrl-C). Run (needs Debian's GStreamer RTSP server under
/usr/bin/python3, see tools/rtsp_server.py, and ffmpeg)::

    python tools/soak.py --minutes 30 [--seed 1] [--keep]

What runs: ``facewatch -v run -c <generated config>`` as a real subprocess, two cameras, each a
``tools/rtsp_server.py`` process looping an H.264 clip in which the enrolled astronaut enters every
``--cycle`` seconds (cooldown 0, so every entry is one alert); a webhook receiver (``http.server`` in this
process) records every POST's event id. Faults, on a seeded random schedule printed at the start:

* camera drop: an RTSP server is SIGKILLed and restarted on the same port 1-5 s later;
* stage kill: SIGKILL of one stage process (pid from the run's "started stage X pid N" log line; never the
  supervisor) about every ``--kill-every`` seconds, the stages taken in shuffled rounds;
* webhook outage: the receiver closes its port for 30-120 s, about once every 8 minutes, then comes back.

Why "expected" can be computed: the RTSP server starts its clip at frame 0 for every new client (checked:
phase resets on each connection, loops are seamless), so the clip's face entries follow the capture's
"camera X online" line; entries that are not whole inside a time the camera was up (from that line until a
camera drop or a capture-stage kill) are not expected. Everything is measured from outside: the run's log
lines (timestamped as they arrive), the event store's ``events()``, the webhook bodies, ``/proc`` and the
Prometheus endpoint; nothing of the alert delivery code is imported.
"""
from __future__ import annotations

import argparse
import http.server
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# Targets (issue #11): what a 24/7 deployment needs to look healthy after faults.
CAMERA_RECOVERY_S = 5.0  # server back -> frames flowing (CAMERA ONLINE)
STAGE_RESTART_S = 2.0  # SIGKILL -> the supervisor's "started stage" line for the replacement
GROWTH_PCT = 5.0  # RSS and open files, warm-up -> end
SAMPLE_EVERY_S = 10.0
SOURCE_FPS = 25
APPEAR_AT_S = 0.2  # first entry of each clip cycle, as tools/bench_pipeline.py's make_clip
GAP_S = 0.5  # the face is gone for the last GAP_S of each cycle, so each entry is a new track
MATCH_TOL_S = 0.25  # an event matches an entry when its capture time is inside the entry +- this
STAGE_LINE = re.compile(r"started stage (\S+) pid (\d+)")
CONSOLE_CAM = re.compile(r"CAMERA (\S+) (ONLINE|OFFLINE)\b")
CAPTURE_CAM = re.compile(r"camera (\S+) (online|offline):")
COUNTER = re.compile(r'^facewatch_(\w+?)_total\{stage="([^"]+)"\}\s+(\S+)$')


class HarnessError(RuntimeError):
    """The harness itself cannot do its job (missing tool, port, server that will not start): exit 2."""


class Interrupted(BaseException):
    """SIGINT/SIGTERM to this script: clean up, print what was measured, exit 130."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pdeathsig_prefix() -> list[str]:
    """``setpriv --pdeathsig TERM`` so our children get SIGTERM even if this script is SIGKILLed (no
    ``preexec_fn``: it is unsafe with threads running); nothing when setpriv is missing."""
    exe = shutil.which("setpriv")
    return [exe, "--pdeathsig", "TERM", "--"] if exe else []


def fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "**FAIL**")


# ----------------------------------------------------------------------------- the run's log
@dataclass
class Line:
    t: float  # time.time() when this script read it
    stream: str
    text: str


class RunLog:
    """``facewatch run``'s stdout and stderr, read by two threads, each line stamped on arrival (the log's own
    timestamps have 1 s resolution) and copied to a file."""

    def __init__(self, proc: subprocess.Popen, path: Path) -> None:
        self.lines: list[Line] = []
        self.lock = threading.Lock()
        self.fh = open(path, "w", buffering=1)
        self.threads = [threading.Thread(target=self._read, args=(proc.stdout, "out"), daemon=True),
                        threading.Thread(target=self._read, args=(proc.stderr, "err"), daemon=True)]
        for th in self.threads:
            th.start()

    def _read(self, pipe, name: str) -> None:
        for raw in iter(pipe.readline, ""):
            line = Line(time.time(), name, raw.rstrip("\n"))
            with self.lock:
                self.lines.append(line)
                self.fh.write(f"{line.t:.3f} {name} {line.text}\n")

    def snapshot(self) -> list[Line]:
        with self.lock:
            return list(self.lines)

    def stage_starts(self) -> list[tuple[float, str, int]]:
        return [(ln.t, m[1], int(m[2])) for ln in self.snapshot() if (m := STAGE_LINE.search(ln.text))]

    def latest_pids(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _t, name, pid in self.stage_starts():
            out[name] = pid
        return out

    def camera_lines(self, camera: str) -> list[tuple[float, bool, str]]:
        """(time, online, source) with source 'console' (the alert stage's CAMERA line) or 'capture' (its log)."""
        out = []
        for ln in self.snapshot():
            if (m := CONSOLE_CAM.search(ln.text)) and m[1] == camera:
                out.append((ln.t, m[2] == "ONLINE", "console"))
            elif (m := CAPTURE_CAM.search(ln.text)) and m[1] == camera:
                out.append((ln.t, m[2] == "online", "capture"))
        return out

    def first_online(self, camera: str, after: float) -> tuple[float, str] | None:
        """First CAMERA <camera> ONLINE console line after ``after``; the capture's own log line if the console
        line is missing (the alert stage prints it: it is lost when that stage is down)."""
        lines = [(t, src) for t, on, src in self.camera_lines(camera) if on and t >= after]
        console = [x for x in lines if x[1] == "console"]
        return console[0] if console else (lines[0] if lines else None)

    def close(self) -> None:
        for th in self.threads:
            th.join(5)
        self.fh.close()


# ----------------------------------------------------------------------------- RTSP cameras
class RtspCamera:
    """One ``tools/rtsp_server.py`` process (system Python, GStreamer) serving ``h264`` on a fixed port."""

    def __init__(self, name: str, h264: Path, port: int, log: Path) -> None:
        self.name, self.h264, self.port, self.logpath = name, h264, port, log
        self.proc: subprocess.Popen | None = None
        self.url = f"rtsp://127.0.0.1:{port}/cam"

    @property
    def up(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, tries: int = 10) -> float:
        """Start and wait for READY; returns the READY time. Retries while the port is not free again yet."""
        last = ""
        for _ in range(tries):
            with open(self.logpath, "a") as err:
                self.proc = subprocess.Popen(pdeathsig_prefix() + ["/usr/bin/python3", str(REPO / "tools" / "rtsp_server.py"),
                                             "--file", str(self.h264), "--port", str(self.port), "--path", "/cam",
                                             "--fps", str(SOURCE_FPS)],
                                             stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)
            ready, _, _ = select.select([self.proc.stdout], [], [], 15)
            last = self.proc.stdout.readline() if ready else "(nothing within 15 s)"
            if last.startswith("READY"):
                return time.time()
            self.kill()
            time.sleep(0.5)
        raise HarnessError(f"RTSP server for {self.name} on port {self.port} does not start: {last.strip()} (see {self.logpath})")

    def kill(self) -> float:
        t = time.time()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        return t


# ----------------------------------------------------------------------------- webhook receiver
class WebhookReceiver:
    """A real HTTP server on 127.0.0.1:port recording every POST (arrival time, event id from the JSON body).
    ``down()`` closes the listening socket (connections are refused), ``up()`` binds the same port again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[tuple[float, tuple | None]] = []  # arrival time, StoredEvent.key of the body
        self.bad: list[str] = []
        self.lock = threading.Lock()
        self.server: http.server.ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _handler(self):
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = None
                try:
                    d = json.loads(body)
                    key = (int(d["id"]), str(d["camera"]), round(float(d["ts_capture"]), 3))
                except (ValueError, TypeError, KeyError, AttributeError) as exc:
                    with receiver.lock:
                        receiver.bad.append(f"{type(exc).__name__} {exc}: {body[:80]!r}")
                with receiver.lock:
                    receiver.received.append((time.time(), key))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        return Handler

    def up(self) -> None:
        for _ in range(40):  # the port can take a moment to be bindable again
            try:
                self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
                break
            except OSError:
                time.sleep(0.25)
        else:
            raise HarnessError(f"webhook receiver cannot bind 127.0.0.1:{self.port} again")
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def keys(self) -> dict[tuple, float]:
        """Unique events received (``StoredEvent.key``: id, camera, capture time) -> first arrival time."""
        out: dict[tuple, float] = {}
        with self.lock:
            for t, key in self.received:
                if key is not None and key not in out:
                    out[key] = t
        return out


# ----------------------------------------------------------------------------- event store and metrics
@dataclass
class StoredEvent:
    id: int
    ts: float
    ts_capture: float
    camera: str

    @property
    def key(self) -> tuple:
        """What identifies one alert across the store and the webhook: ids alone can be reused when rows are
        lost (SQLite's rowid continues from what survived)."""
        return (self.id, self.camera, round(self.ts_capture, 3))


class StoreReader:
    """Rows of the event store.

    While the run is live it reads through a read-only SQLite connection (``mode=ro``), not through
    ``EventStore``: found by this soak, a read-write connection from another process that closes (as
    ``EventStore(path).events()`` then ``close()`` does) checkpoints and deletes the WAL under the alert
    stage when that stage holds two ``EventStore`` objects (each ``__init__`` opens and closes the file,
    which drops the process's POSIX locks); the stage then writes into a deleted WAL, nobody else sees its
    events, and a SIGKILL of the stage loses them. A read-only connection never checkpoints, so the soak does
    not cause what it measures. ``--live-eventstore`` reads through ``EventStore`` anyway (like an operator
    running ``facewatch events`` during the run). After the run stopped the final count is
    ``EventStore(path).events()``, the one API this script relies on (read-only SQL if that fails).
    """

    def __init__(self, path: Path, live_eventstore: bool = False) -> None:
        self.path = path
        self.live_eventstore = live_eventstore
        self.final = False  # set once the run has stopped
        self.note = ""

    def events(self) -> list[StoredEvent]:
        if not self.path.exists():
            return []
        if self.final or self.live_eventstore:
            try:
                return self._eventstore()
            except Exception as exc:  # noqa: BLE001 - a measurement must go on; say what happened instead
                if not self.note:
                    self.note = f"EventStore.events() failed ({type(exc).__name__}: {exc}); read events.sqlite read-only"
                    print(f"note: {self.note}", flush=True)
        return self._readonly()

    def _eventstore(self) -> list[StoredEvent]:
        from stream.store.events import EventStore

        store = EventStore(self.path)
        try:
            evs = store.events()
        finally:
            getattr(store, "close", lambda: None)()
        return [StoredEvent(int(e.id), float(e.ts), float(e.ts_capture), str(e.camera)) for e in evs]

    def _readonly(self) -> list[StoredEvent]:
        try:
            db = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, timeout=10)
            try:
                rows = db.execute("SELECT id, ts, ts_capture, camera FROM events").fetchall()
            finally:
                db.close()
        except sqlite3.Error as exc:  # not created yet (no table), or busy: nothing readable this time
            if "no such table" not in str(exc):
                print(f"note: reading {self.path} read-only failed: {exc}", flush=True)
            return []
        return [StoredEvent(int(r[0]), float(r[1]), float(r[2]), str(r[3])) for r in rows]


def scrape_counters(port: int) -> dict[str, float] | None:
    """Sum of every ``facewatch_*_total`` counter per stage label (restarts excluded), or None when the
    endpoint does not answer."""
    import requests

    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=1.0).text
    except requests.RequestException:
        return None
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = COUNTER.match(line)
        if m and m[1] != "stage_restarts":
            try:
                out[m[2]] = out.get(m[2], 0.0) + float(m[3])
            except ValueError:
                pass
    return out


# ----------------------------------------------------------------------------- /proc
def proc_usage(pid: int) -> tuple[int, int] | None:
    """(VmRSS in kB, open fds) of ``pid``, or None when it is gone."""
    try:
        rss = 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        return rss, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError):
        return None


def start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot): with the pid, it names one process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


# ----------------------------------------------------------------------------- faults and what was seen
@dataclass
class Drop:
    camera: str
    t_kill: float
    down_s: float
    t_back: float | None = None  # the restarted server's READY
    t_online: float | None = None
    online_src: str = ""


@dataclass
class Kill:
    stage: str
    t_kill: float
    pid: int
    t_started: float | None = None
    new_pid: int | None = None
    t_moving: float | None = None  # its counters moved again on /metrics
    moving_note: str = ""

    @property
    def kind(self) -> str:
        return self.stage.split(":", 1)[0]


@dataclass
class Outage:
    t_down: float
    planned_s: float
    t_up: float | None = None
    stored_during: int = 0
    outstanding: list[int] = field(default_factory=list)
    t_all: float | None = None  # all outstanding received


@dataclass
class Plan:
    drops: list[tuple[float, str, float]]  # (t from start, camera, seconds down)
    kills: list[tuple[float, str]]
    outages: list[tuple[float, float]]

    @staticmethod
    def make(seed: int, total_s: float, cameras: list[str], drop_every: float, kill_every: float) -> "Plan":
        rng = random.Random(seed)
        drops, t = [], rng.uniform(10, 20)
        while t < total_s - 10:
            drops.append((round(t, 1), rng.choice(cameras), round(rng.uniform(1, 5), 1)))
            t += rng.uniform(0.5 * drop_every, 1.5 * drop_every)
        stages = [f"capture:{c}" for c in cameras] + ["detect", "embed", "match", "alert"]
        kills, round_, t = [], [], rng.uniform(25, 40)
        while t < total_s - 15:
            if not round_:
                round_ = rng.sample(stages, len(stages))  # shuffled rounds: every kind gets hit in a long run
            kills.append((round(t, 1), round_.pop()))
            t += rng.uniform(0.75 * kill_every, 1.25 * kill_every)
        n = max(1, round(total_s / 480))
        slot = total_s / n
        outages = []
        for i in range(n):
            start = i * slot + rng.uniform(0.15, 0.3) * slot
            dur = min(rng.uniform(30, 120), 0.6 * slot, total_s - 25 - start)
            if dur >= 10:
                outages.append((round(start, 1), round(dur, 1)))
        return Plan(drops, kills, outages)

    def lines(self) -> list[str]:
        return ([f"  camera drops ({len(self.drops)}): " + ", ".join(f"{t:g}s {c} {d:g}s" for t, c, d in self.drops)]
                + [f"  stage kills ({len(self.kills)}): " + ", ".join(f"{t:g}s {s}" for t, s in self.kills)]
                + [f"  webhook outages ({len(self.outages)}): " + ", ".join(f"{t:g}s for {d:g}s" for t, d in self.outages)])


# ----------------------------------------------------------------------------- the soak
class Soak:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.cameras = [f"cam{i}" for i in range(args.cameras)]
        self.total_s = args.minutes * 60.0
        self.cycle = args.cycle
        self.servers: dict[str, RtspCamera] = {}
        self.hook = WebhookReceiver(free_port())
        self.metrics_port = free_port()
        self.run: subprocess.Popen | None = None
        self.log: RunLog | None = None
        self.store = StoreReader(work / "events.sqlite", args.live_eventstore)
        self.drops: list[Drop] = []
        self.kills: list[Kill] = []
        self.outages: list[Outage] = []
        self.samples: list[tuple[float, dict[str, tuple[int, int, int]]]] = []  # t, role -> (pid, rss kB, fds)
        self.seen_pids: dict[int, str] = {}  # pid -> its start time in /proc (pids get reused)
        self.t0 = 0.0  # soak start (pipeline alerting), all "t=" are relative to it
        self.t_end: float | None = None
        self.run_exit: tuple[float, int] | None = None
        self.problems: list[str] = []  # things the harness expected and did not see
        self.stop_watchers = threading.Event()

    def rel(self, t: float | None) -> str:
        return "-" if t is None else f"{t - self.t0:.1f}"

    def say(self, msg: str) -> None:
        print(f"[t={time.time() - self.t0:7.1f}s] {msg}" if self.t0 else f"[setup] {msg}", flush=True)

    # -------------------------------------------------------------- setup
    def prepare(self) -> Path:
        if not shutil.which("ffmpeg"):
            raise HarnessError("ffmpeg is not installed (apt-get install ffmpeg)")
        probe = subprocess.run(["/usr/bin/python3", "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                                "from gi.repository import GstRtspServer"], capture_output=True, text=True)
        if probe.returncode != 0:
            raise HarnessError("Debian's GStreamer RTSP server is missing under /usr/bin/python3 (python3-gi "
                               "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,bad}): " + probe.stderr.strip()[-200:])
        from stream.config import load_config
        from stream.loaders import photo_analyzer
        from stream.media.clips import Appearance, astronaut_head, render_clip
        from stream.store.gallery import Gallery

        w, h = self.args.size
        head = astronaut_head()
        loops = max(1, round(12 / self.cycle))  # a few cycles: the server loops the file seamlessly
        seconds = loops * self.cycle
        apps = [Appearance(head, APPEAR_AT_S + k * self.cycle, APPEAR_AT_S + (k + 1) * self.cycle - GAP_S, int(220 * h / 720))
                for k in range(loops)]
        raw = render_clip(self.work / "clip.raw.mp4", apps, size=(w, h), fps=SOURCE_FPS, duration_s=seconds)
        h264 = self.work / "clip.h264"
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(raw), "-c:v", "libx264", "-bf", "0", "-g", str(SOURCE_FPS),
                        "-preset", "veryfast", "-pix_fmt", "yuv420p", "-f", "h264", str(h264)], check=True)
        raw.unlink()
        face = photo_analyzer(load_config(overrides={"engines": {"engine": "onnxruntime"}})).analyze(head)
        if not face:
            raise HarnessError("no face found in the astronaut photo: cannot enroll")
        Gallery(self.work / "gallery").enroll("astronaut", face[0].embedding[None])
        del face
        for cam in self.cameras:
            self.servers[cam] = RtspCamera(cam, h264, free_port(), self.work / f"rtsp-{cam}.log")
        cfg = {
            "data_dir": str(self.work),
            "engines": {"engine": "onnxruntime", **({"threads": self.args.threads} if self.args.threads is not None else {})},
            "matching": {"gallery": str(self.work / "gallery")},
            "cameras": [{"name": c, "source": s.url, "fps": self.args.fps} for c, s in self.servers.items()],
            "alerts": {"cooldown_s": 0, "sinks": {"console": True, "webhook": {"url": self.hook.url}},
                       "delivery": {"backoff_s": self.args.backoff, "max_backoff_s": self.args.max_backoff}},
            "metrics": {"enabled": True, "port": self.metrics_port},
        }
        path = self.work / "soak.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        try:
            load_config(path)
        except Exception as exc:  # noqa: BLE001 - the generated config must be valid, else the harness is broken
            raise HarnessError(f"generated config {path} is rejected: {exc}") from None
        return path

    def start(self, cfg: Path) -> None:
        for cam, srv in self.servers.items():
            srv.start()
            self.say(f"RTSP server {cam} READY at {srv.url}")
        self.hook.up()
        self.run = subprocess.Popen(pdeathsig_prefix() + [sys.executable, "-m", "stream.cli", "-v", "run", "-c", str(cfg)],
                                    cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
        self.log = RunLog(self.run, self.work / "run.log")
        self.say(f"facewatch run pid {self.run.pid}; config {cfg}; log {self.work / 'run.log'}")
        # The soak starts once the pipeline is really up: every camera online and a first alert stored.
        deadline = time.time() + self.args.startup_timeout
        online: set[str] = set()
        while time.time() < deadline:
            if self.run.poll() is not None:
                tail = "\n".join(ln.text for ln in self.log.snapshot()[-15:])
                raise HarnessError(f"facewatch run exited with {self.run.returncode} during start-up:\n{tail}")
            online = {c for c in self.cameras if any(on for _t, on, _s in self.log.camera_lines(c))}
            if online == set(self.cameras) and self.store.events():
                break
            time.sleep(0.5)
        else:
            missing = [f"camera {c} never logged online" for c in self.cameras if c not in online]
            if not self.store.events():
                missing.append("no alert stored")
            self.problems.append(f"start-up: after {self.args.startup_timeout:.0f} s " + ", ".join(missing) + "; soaking anyway")
            print("WARNING " + self.problems[-1], flush=True)
        self.t0 = time.time()
        self.say(f"pipeline up (cameras online, first alert stored): soak starts at epoch {self.t0:.3f} (the run log's "
                 "first column), faults from now on")

    # -------------------------------------------------------------- faults
    def camera_recovering(self, cam: str) -> bool:
        """True while a drop of ``cam`` or a kill of its capture stage has not been followed by ONLINE."""
        if not self.servers[cam].up:
            return True
        for d in self.drops:
            if d.camera == cam and d.t_online is None:
                return True
        for k in self.kills:
            if k.stage == f"capture:{cam}" and self.log.first_online(cam, k.t_kill) is None:
                return True
        return False

    def do_drop(self, cam: str, down_s: float) -> Drop:
        d = Drop(cam, self.servers[cam].kill(), down_s)
        self.drops.append(d)
        self.say(f"camera drop: killed RTSP server {cam}, restart in {down_s:.1f} s")
        return d

    def do_kill(self, stage: str) -> Kill | None:
        pid = self.log.latest_pids().get(stage)
        if pid is None:
            self.problems.append(f"kill of {stage} skipped: no 'started stage {stage} pid N' line in the log")
            self.say(self.problems[-1])
            return None
        if pid == self.run.pid or parent_of(pid) != self.run.pid:
            self.problems.append(f"kill of {stage} skipped: pid {pid} is not a live child of facewatch run")
            self.say(self.problems[-1])
            return None
        t = time.time()
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            self.problems.append(f"kill of {stage}: pid {pid} was already gone")
            return None
        k = Kill(stage, t, pid)
        self.kills.append(k)
        self.say(f"stage kill: SIGKILL {stage} pid {pid}")
        threading.Thread(target=self.watch_restart, args=(k,), daemon=True).start()
        return k

    def watch_restart(self, k: Kill) -> None:
        """Poll the log for the replacement's "started stage" line and /metrics until the stage's counters move
        again (the dead stage's are frozen at its last heartbeat). Counters of embed/match/alert only move
        with faces, so theirs include waiting for the next entry (up to one cycle)."""
        time.sleep(0.2)  # heartbeats sent before the kill are read by the supervisor by now
        base = scrape_counters(self.metrics_port)
        base_v = base.get(k.stage) if base else None
        if base is None:
            k.moving_note = "metrics endpoint did not answer"
        elif base_v is None:
            k.moving_note = f"no counters for stage {k.stage} on /metrics"
        deadline = k.t_kill + 120
        while time.time() < deadline and not self.stop_watchers.is_set():
            if k.t_started is None:
                for t, name, pid in self.log.stage_starts():
                    if name == k.stage and pid != k.pid and t >= k.t_kill:
                        k.t_started, k.new_pid = t, pid
                        break
            if base_v is not None and k.t_started is not None and k.t_moving is None:
                now = scrape_counters(self.metrics_port) or {}
                v = now.get(k.stage)
                if v is not None and v != base_v:
                    k.t_moving = time.time()
            if k.t_started is not None and (k.t_moving is not None or base_v is None):
                return
            time.sleep(0.25)
        if k.t_started is None:
            k.moving_note = "no replacement"
        elif k.t_moving is None and not k.moving_note:
            k.moving_note = "counters did not move within 120 s"

    def webhook_down(self, planned: float) -> None:
        self.hook.down()
        self.outages.append(Outage(time.time(), planned))
        self.say(f"webhook receiver DOWN for {planned:.0f} s")

    def webhook_up(self) -> None:
        o = self.outages[-1]
        stored = self.store.events()
        got = self.hook.keys()
        o.outstanding = sorted({e.key for e in stored} - set(got))
        o.stored_during = sum(1 for e in stored if e.ts >= o.t_down)
        self.hook.up()
        o.t_up = time.time()
        self.say(f"webhook receiver UP again: {len(o.outstanding)} stored events not delivered yet")

    def check_outages(self) -> None:
        got = self.hook.keys()
        for o in self.outages:
            if o.t_up is not None and o.t_all is None and all(i in got for i in o.outstanding):
                o.t_all = max([got[i] for i in o.outstanding], default=o.t_up)

    def check_drops(self, final: bool = False) -> None:
        """Time each recovery; ``final`` looks again, because a console line can arrive a moment after the
        capture's own log line that was taken as a stand-in."""
        for d in self.drops:
            if d.t_back is not None and (d.t_online is None or (final and d.online_src != "console")):
                found = self.log.first_online(d.camera, d.t_back)
                if found:
                    d.t_online, d.online_src = found

    def sample(self) -> None:
        roles = {"supervisor": self.run.pid, **self.log.latest_pids()}
        row = {}
        for role, pid in roles.items():
            if pid not in self.seen_pids and (st := start_time(pid)):
                self.seen_pids[pid] = st
            u = proc_usage(pid)
            if u is not None:
                row[role] = (pid, u[0], u[1])
        self.samples.append((time.time(), row))

    # -------------------------------------------------------------- main loop
    def soak(self) -> None:
        a = self.args
        plan = Plan.make(a.seed, self.total_s, self.cameras, a.drop_every, a.kill_every)
        print(f"fault schedule (seed {a.seed}; times from the soak start; deferred while the target is recovering):", flush=True)
        print("\n".join(plan.lines()), flush=True)
        drops = [(self.t0 + t, c, d) for t, c, d in plan.drops]
        kills = [(self.t0 + t, s) for t, s in plan.kills]
        outs = [(self.t0 + t, d) for t, d in plan.outages]
        restarts: list[tuple[float, Drop]] = []
        hook_up_at: float | None = None
        next_sample = time.time()
        next_report = self.t0 + a.report_every
        end = self.t0 + self.total_s
        while time.time() < end:
            now = time.time()
            if self.run.poll() is not None:
                self.run_exit = (now, self.run.returncode)
                self.problems.append(f"facewatch run exited with status {self.run.returncode} at t={now - self.t0:.1f}s; soak cut short")
                self.say(self.problems[-1])
                break
            for item in [r for r in restarts if r[0] <= now]:
                restarts.remove(item)
                d = item[1]
                d.t_back = self.servers[d.camera].start()
                self.say(f"camera drop: RTSP server {d.camera} back (down {d.t_back - d.t_kill:.1f} s)")
            while drops and drops[0][0] <= now:
                t, cam, down = drops.pop(0)
                if self.camera_recovering(cam):
                    drops.insert(0, (now + 2.0, cam, down))
                    break
                restarts.append((now + down, self.do_drop(cam, down)))
            while kills and kills[0][0] <= now:
                t, stage = kills.pop(0)
                cam = stage.split(":", 1)[1] if stage.startswith("capture:") else None
                busy = (cam and self.camera_recovering(cam)) or any(k.stage == stage and k.t_started is None for k in self.kills)
                if busy:
                    kills.insert(0, (now + 2.0, stage))
                    break
                self.do_kill(stage)
            if outs and outs[0][0] <= now and hook_up_at is None:
                t, dur = outs.pop(0)
                self.webhook_down(dur)
                hook_up_at = now + dur
            if hook_up_at is not None and now >= hook_up_at:
                self.webhook_up()
                hook_up_at = None
            self.check_drops()
            self.check_outages()
            if now >= next_sample:
                self.sample()
                next_sample += SAMPLE_EVERY_S
            if now >= next_report and now < end - 30:
                print(f"\n## Interim report at t={now - self.t0:.0f} s\n\n{self.report(now)}\n", flush=True)
                next_report += a.report_every
            time.sleep(0.1)
        self.t_end = min(time.time(), end)
        if self.run_exit is None:
            self.sample()
        # Quiesce: every server and the receiver up, then give the deliveries time to catch up.
        for _t, d in restarts:
            d.t_back = self.servers[d.camera].start()
        if hook_up_at is not None:
            self.webhook_up()
        self.say(f"soak over; draining webhook deliveries (up to {a.drain:.0f} s)")
        deadline = time.time() + a.drain
        while time.time() < deadline:
            self.check_drops()
            self.check_outages()
            stored = {e.key for e in self.store.events()}
            if stored <= set(self.hook.keys()) and all(d.t_online for d in self.drops) and \
                    all(k.t_started and (k.t_moving or k.moving_note) for k in self.kills):
                break
            if self.run.poll() is not None:
                break
            time.sleep(1.0)
        self.stop_watchers.set()

    def stop_run(self) -> int | None:
        if self.run is None:
            return None
        if self.run.poll() is None:
            self.run.send_signal(signal.SIGTERM)
            try:
                self.run.wait(30)
            except subprocess.TimeoutExpired:
                self.run.kill()
                self.run.wait(10)
        if self.log is not None:
            self.log.close()
        # A stage that outlived a SIGKILLed run would keep cameras and CPU busy: end the ones we saw.
        for pid, started in self.seen_pids.items():
            if pid != self.run.pid and start_time(pid) == started:  # the same process, not a reused pid
                try:
                    os.kill(pid, signal.SIGKILL)
                    print(f"killed stage pid {pid}: it outlived facewatch run", flush=True)
                except ProcessLookupError:
                    pass
        return self.run.returncode

    def cleanup(self) -> None:
        self.stop_watchers.set()
        try:
            self.stop_run()
        finally:
            for srv in self.servers.values():
                srv.kill()
            self.hook.down()

    # -------------------------------------------------------------- analysis
    def up_intervals(self, cam: str, t_end: float) -> list[tuple[float, float]]:
        """Times the camera delivered frames: from its capture's "online" line (the clip's frame 0: see the
        module docstring) to a drop, a capture kill or an offline line, whichever comes first."""
        lines = self.log.camera_lines(cam)
        src = "capture" if any(s == "capture" for _t, _o, s in lines) else "console"
        marks = [(t, on) for t, on, s in lines if s == src]  # one source: a late console OFFLINE must not cut an interval
        marks += [(d.t_kill, False) for d in self.drops if d.camera == cam]
        marks += [(k.t_kill, False) for k in self.kills if k.stage == f"capture:{cam}"]
        out, start = [], None
        for t, on in sorted(marks):
            if t > t_end:
                break
            if on and start is None:
                start = t
            elif not on and start is not None:
                out.append((start, t))
                start = None
        if start is not None:
            out.append((start, t_end))
        return out

    def alerts(self, now: float) -> dict:
        t_end = self.t_end or now - 2.0  # interim: an entry that just ended may not be stored yet
        evs = [e for e in self.store.events() if self.t0 <= e.ts_capture <= t_end]
        got = self.hook.keys()
        per_cam, lost_at = {}, []
        offsets = []
        for cam in self.cameras:
            mine = sorted(e.ts_capture for e in evs if e.camera == cam)
            matched_evs: set[float] = set()
            expected = matched = 0
            up_s = 0.0
            for a, b in self.up_intervals(cam, t_end):
                up_s += max(0.0, min(b, t_end) - max(a, self.t0))
                k = 0
                while True:
                    s = a + APPEAR_AT_S + k * self.cycle
                    e = s + self.cycle - GAP_S
                    k += 1
                    if e > b:
                        break
                    if s < self.t0:
                        continue
                    expected += 1
                    hit = [x for x in mine if s - MATCH_TOL_S <= x <= e + MATCH_TOL_S]
                    if hit:
                        matched += 1
                        matched_evs.update(hit)
                        offsets.append(hit[0] - s)
                    else:
                        lost_at.append((cam, s, e))
            cam_evs = [e for e in evs if e.camera == cam]
            per_cam[cam] = {"up_s": up_s, "expected": expected, "stored": len(cam_evs), "matched": matched,
                            "lost": expected - matched, "extra": len(mine) - len(matched_evs),
                            "delivered": sum(1 for e in cam_evs if e.key in got)}
        return {"per_cam": per_cam, "lost_at": lost_at, "offsets": offsets, "events": evs, "got": got}

    def lost_cause(self, cam: str, s: float, e: float) -> str:
        for k in self.kills:
            if k.stage.startswith("capture:") and k.stage != f"capture:{cam}":
                continue
            ready = k.t_moving or ((k.t_started + 10) if k.t_started else k.t_kill + 30)
            if k.t_kill <= e and ready >= s - 1:
                return f"during the {k.stage} restart"
        for d in self.drops:
            if d.camera == cam and d.t_kill - 1 <= e and (d.t_online or d.t_kill + 30) >= s - 1:
                return f"next to the {d.camera} drop"
        return "no fault nearby"

    def report(self, now: float) -> str:
        out: list[str] = []
        summary: list[tuple[str, str, str, bool | None]] = []
        # --- alerts
        al = self.alerts(now)
        pc = al["per_cam"]
        tot = {k: sum(v[k] for v in pc.values()) for k in ("up_s", "expected", "stored", "matched", "lost", "extra", "delivered")}
        out.append(f"### Alerts (soak window {((self.t_end or now) - self.t0):.0f} s; a face entry every {self.cycle:g} s per camera, "
                   "expected only while the camera was up and its capture stage running)\n")
        out.append("| camera | up s | expected | stored | of them matching an expected entry | lost from the store | extra (partial entries, splits) | delivered to webhook |")
        out.append("|---|---|---|---|---|---|---|---|")
        for cam, v in list(pc.items()) + [("total", tot)]:
            out.append(f"| {cam} | {v['up_s']:.0f} | {v['expected']} | {v['stored']} | {v['matched']} | {v['lost']} | {v['extra']} | {v['delivered']} |")
        if al["offsets"]:
            out.append(f"\nentry start -> capture time of the deciding frame: p50 {statistics.median(al['offsets']):.2f} s, "
                       f"max {max(al['offsets']):.2f} s (checks the clip-phase assumption)")
        if al["lost_at"]:
            causes: dict[str, int] = {}
            for cam, s, e in al["lost_at"]:
                c = self.lost_cause(cam, s, e)
                causes[c] = causes.get(c, 0) + 1
            out.append("lost entries: " + "; ".join(f"{n} {c}" for c, n in sorted(causes.items(), key=lambda x: -x[1]))
                       + " (at t=" + ", ".join(f"{cam} {s - self.t0:.1f}s" for cam, s, _e in al["lost_at"][:20])
                       + (" ..." if len(al["lost_at"]) > 20 else "") + ")")
        summary.append(("events lost from the store", "0", f"{tot['lost']} of {tot['expected']} expected", tot["lost"] == 0 if tot["expected"] else None))
        stored_all = {e.key for e in self.store.events()}
        undelivered = sorted(stored_all - set(al["got"]))
        ghosts = sorted(set(al["got"]) - stored_all)
        summary.append(("stored events delivered to the webhook (all, incl. after the drain)", "all",
                        f"{len(stored_all) - len(undelivered)} of {len(stored_all)}", not undelivered))
        if undelivered:
            out.append(f"not delivered (yet): {len(undelivered)} events, e.g. ids {[k[0] for k in undelivered[:10]]}")
        summary.append(("webhook deliveries of events missing from the store", "0", str(len(ghosts)), not ghosts))
        if ghosts:
            out.append(f"delivered to the webhook but not in the store: {len(ghosts)} events (id, camera, capture t): "
                       + ", ".join(f"{k[0]} {k[1]} t={k[2] - self.t0:.1f}s" for k in ghosts[:10]) + (" ..." if len(ghosts) > 10 else ""))
        if self.hook.bad:
            out.append(f"webhook POSTs without a usable JSON id: {len(self.hook.bad)}, e.g. {self.hook.bad[0]}")
        # --- camera drops
        self.check_drops(final=True)
        out.append(f"\n### Camera drops (RTSP server SIGKILLed, restarted on the same port after 1-5 s); target <= {CAMERA_RECOVERY_S:g} s\n")
        # interim: a drop whose server came back less than 30 s ago may still be recovering; leave it for later
        done = [d for d in self.drops if d.t_back is not None and (d.t_online or self.t_end or now - d.t_back > 30)]
        rec = [d.t_online - d.t_back for d in done if d.t_online is not None]
        missing = [d for d in done if d.t_online is None]
        out.append("| drops | server back -> CAMERA ONLINE p50 s | max s | drop -> ONLINE max s | not recovered | over target | result |")
        out.append("|---|---|---|---|---|---|---|")
        over = [r for r in rec if r > CAMERA_RECOVERY_S]
        ok = (not missing and not over) if done else None
        out.append(f"| {len(done)} | {fmt_s(statistics.median(rec) if rec else None)} | {fmt_s(max(rec) if rec else None)} | "
                   f"{fmt_s(max((d.t_online - d.t_kill for d in done if d.t_online), default=None))} | {len(missing)} | {len(over)} | {verdict(ok)} |")
        for d in missing:
            out.append(f"- {d.camera} drop at t={self.rel(d.t_kill)}s: no CAMERA {d.camera} ONLINE line after the server came back at t={self.rel(d.t_back)}s")
        fallback = [d for d in done if d.online_src == "capture"]
        if fallback:
            out.append(f"- {len(fallback)} recoveries timed from the capture's own 'camera X online' log line, the console's CAMERA "
                       "line was missing: " + ", ".join(f"{d.camera} back at t={self.rel(d.t_back)}s" for d in fallback))
        summary.append((f"camera drop -> frames again", f"<= {CAMERA_RECOVERY_S:g} s each",
                        f"max {fmt_s(max(rec) if rec else None)} s, {len(missing)} not recovered, n={len(done)}", ok))
        # --- stage kills
        out.append(f"\n### Stage kills (SIGKILL); target: replacement started <= {STAGE_RESTART_S:g} s\n")
        out.append("| stage | kills | kill -> 'started stage' p50 s | max s | kill -> its counters move on /metrics p50 s | max s | result |")
        out.append("|---|---|---|---|---|---|---|")
        kinds = sorted({k.kind for k in self.kills})
        all_ok: bool | None = None
        worst = None
        for kind in kinds:
            ks = [k for k in self.kills if k.kind == kind]
            st = [k.t_started - k.t_kill for k in ks if k.t_started]
            mv = [k.t_moving - k.t_kill for k in ks if k.t_moving]
            ok = len(st) == len(ks) and all(v <= STAGE_RESTART_S for v in st)
            all_ok = ok if all_ok is None else (all_ok and ok)
            worst = max(st + ([worst] if worst is not None else [])) if st else worst
            out.append(f"| {kind} | {len(ks)} | {fmt_s(statistics.median(st) if st else None)} | {fmt_s(max(st) if st else None)} | "
                       f"{fmt_s(statistics.median(mv) if mv else None)} | {fmt_s(max(mv) if mv else None)} | {verdict(ok)} |")
        for k in self.kills:
            if k.t_started is None and (now - k.t_kill > 30 or self.t_end):
                out.append(f"- {k.stage} killed at t={self.rel(k.t_kill)}s: no 'started stage {k.stage} pid N' line for a new pid")
            elif k.t_moving is None and k.moving_note:
                out.append(f"- {k.stage} killed at t={self.rel(k.t_kill)}s: counters not timed ({k.moving_note})")
        out.append("(counters of embed/match/alert move only when a face is seen, so that column includes waiting for the next entry)")
        summary.append(("stage kill -> replacement started", f"<= {STAGE_RESTART_S:g} s each",
                        f"max {fmt_s(worst)} s, n={len(self.kills)}", all_ok))
        # --- webhook outages
        out.append("\n### Webhook receiver outages (port closed, then the same port again)\n")
        out.append("| # | down at t s | down s | stored while down | outstanding when it came back | all delivered after s | result |")
        out.append("|---|---|---|---|---|---|---|")
        oks = []
        for i, o in enumerate(self.outages, 1):
            if o.t_up is None:
                out.append(f"| {i} | {self.rel(o.t_down)} | (still down) | | | | |")
                continue
            ok = o.t_all is not None
            oks.append(ok)
            out.append(f"| {i} | {self.rel(o.t_down)} | {o.t_up - o.t_down:.0f} | {o.stored_during} | {len(o.outstanding)} | "
                       f"{fmt_s(o.t_all - o.t_up if o.t_all else None)} | {verdict(ok)} |")
        summary.append(("outstanding webhooks delivered after the receiver returns", "all",
                        ", ".join(f"{len(o.outstanding)} in {fmt_s(o.t_all - o.t_up if o.t_all else None)} s" for o in self.outages if o.t_up)
                        or "no outage yet", all(oks) if oks else None))
        # --- resources
        res_ok = self.resources(out, now)
        summary.append((f"RSS and open files growth after warm-up", f"<= {GROWTH_PCT:g} %", res_ok[1], res_ok[0]))
        if self.run_exit:
            summary.append(("facewatch run stayed up", "yes", f"exited {self.run_exit[1]} at t={self.rel(self.run_exit[0])}s", False))
        # --- summary
        out.append("\n### Targets\n")
        out.append("| check | target | measured | result |")
        out.append("|---|---|---|---|")
        for name, target, measured, ok in summary:
            out.append(f"| {name} | {target} | {measured} | {verdict(ok)} |")
        if self.problems or self.store.note:
            out.append("\nnot measured / missing: " + "; ".join(self.problems + ([self.store.note] if self.store.note else [])))
        return "\n".join(out)

    def resources(self, out: list[str], now: float) -> tuple[bool | None, str]:
        warm_s = min(self.args.warmup, self.total_s / 2)
        out.append(f"\n### Resources of facewatch run's process tree (/proc VmRSS, entries in /proc/pid/fd; every {SAMPLE_EVERY_S:g} s), "
                   f"after {warm_s:.0f} s warm-up vs end; target growth <= {GROWTH_PCT:g} %\n")
        after = [(t, r) for t, r in self.samples if t >= self.t0 + warm_s]
        last = self.samples[-1] if self.samples else None
        if len(after) < 2 or last is None:
            out.append(f"(no two samples after the warm-up yet: {len(self.samples)} samples)")
            return None, "not measured yet"
        warm = (after[0][0], {})
        for _t, r in after[:-1]:  # a role missing from the first sample (being restarted): its next sample
            for role, v in r.items():
                warm[1].setdefault(role, v)
        out.append("| role | pid warm-up -> end | RSS MB warm-up | end | growth | open fds warm-up | end | growth | result |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        worst, all_ok = -1e9, True
        roles = list(warm[1])
        sums = [[0, 0], [0, 0]]
        for role in roles:
            w = warm[1][role]
            e = last[1].get(role)
            if e is None:
                out.append(f"| {role} | {w[0]} -> (gone) | {w[1] / 1024:.0f} | - | - | {w[2]} | - | - | n/a |")
                continue
            g_rss = 100 * (e[1] - w[1]) / max(w[1], 1)
            g_fd = 100 * (e[2] - w[2]) / max(w[2], 1)
            ok = g_rss <= GROWTH_PCT and g_fd <= GROWTH_PCT
            all_ok &= ok
            worst = max(worst, g_rss, g_fd)
            for i, v in ((0, w), (1, e)):
                sums[i][0] += v[1]
                sums[i][1] += v[2]
            pids = f"{w[0]}" if w[0] == e[0] else f"{w[0]} -> {e[0]} (killed, new process)"
            out.append(f"| {role} | {pids} | {w[1] / 1024:.0f} | {e[1] / 1024:.0f} | {g_rss:+.1f} % | {w[2]} | {e[2]} | {g_fd:+.1f} % | {verdict(ok)} |")
        if sums[0][0]:
            out.append(f"| all | | {sums[0][0] / 1024:.0f} | {sums[1][0] / 1024:.0f} | {100 * (sums[1][0] - sums[0][0]) / sums[0][0]:+.1f} % | "
                       f"{sums[0][1]} | {sums[1][1]} | {100 * (sums[1][1] - sums[0][1]) / max(sums[0][1], 1):+.1f} % | |")
        out.append(f"(warm-up sample at t={self.rel(warm[0])}s, end sample at t={self.rel(last[0])}s; a stage killed after the warm-up "
                   "is compared with its replacement)")
        return all_ok, f"worst {worst:+.1f} %"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0, help="soak length after the pipeline is up")
    ap.add_argument("--seed", type=int, default=1, help="seed of the fault schedule")
    ap.add_argument("--cameras", type=int, default=2)
    ap.add_argument("--fps", type=float, default=5.0, help="cameras[].fps")
    ap.add_argument("--size", type=lambda s: tuple(int(x) for x in s.split("x")), default=(1280, 720), help="clip WxH")
    ap.add_argument("--cycle", type=float, default=3.0, help="seconds between face entries in the clip")
    ap.add_argument("--threads", type=int, default=None, help="engines.threads (default: the config's)")
    ap.add_argument("--drop-every", type=float, default=10.0, help="mean seconds between camera drops (any camera)")
    ap.add_argument("--kill-every", type=float, default=60.0, help="mean seconds between stage kills")
    ap.add_argument("--backoff", type=float, default=0.5, help="alerts.delivery.backoff_s")
    ap.add_argument("--max-backoff", type=float, default=5.0, help="alerts.delivery.max_backoff_s")
    ap.add_argument("--warmup", type=float, default=120.0, help="resource growth is measured from this many seconds in")
    ap.add_argument("--report-every", type=float, default=300.0, help="seconds between interim reports")
    ap.add_argument("--drain", type=float, default=60.0, help="after the soak, wait up to this long for deliveries")
    ap.add_argument("--startup-timeout", type=float, default=180.0)
    ap.add_argument("--live-eventstore", action="store_true",
                    help="read the store through EventStore during the run, like `facewatch events` (see StoreReader)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (log, config, event store)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="fw-soak-"))
    soak = Soak(args, work)

    def on_signal(signum, _frame) -> None:
        raise Interrupted(signal.Signals(signum).name)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        print(f"facewatch soak: {args.minutes:g} min, {args.cameras} RTSP cameras {args.size[0]}x{args.size[1]} at {args.fps:g} fps, "
              f"a face entry every {args.cycle:g} s, {os.cpu_count()} CPUs; work dir {work}", flush=True)
        cfg = soak.prepare()
        soak.start(cfg)
        soak.soak()
    except Interrupted as exc:
        print(f"\ninterrupted ({exc}): cleaning up, report of what was measured so far", flush=True)
        code = 130
    except HarnessError as exc:
        print(f"HARNESS ERROR: {exc}", file=sys.stderr, flush=True)
        code = 2
    finally:
        for s in old:
            signal.signal(s, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        soak.cleanup()
        soak.store.final = True
        for s, h in old.items():
            signal.signal(s, h)
    if soak.t0 and soak.log is not None and code != 2:
        rc = soak.run.returncode if soak.run else None
        soak.t_end = soak.t_end or time.time()
        if not soak.run_exit:
            print(f"\nfacewatch run stopped with status {rc} after SIGTERM", flush=True)
        print(f"\n## Soak report ({(soak.t_end - soak.t0) / 60:.1f} min, seed {args.seed})\n\n{soak.report(time.time())}", flush=True)
    if args.keep or code == 2:
        print(f"\nwork directory kept: {work}", flush=True)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
