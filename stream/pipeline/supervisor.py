"""Supervisor: starts every stage as its own process, watches heartbeats, restarts the dead, stops cleanly.

A stage that dies (crash, SIGKILL, OOM) or stops heartbeating is restarted with a backoff; the others keep
running, and ZeroMQ reconnects them by itself. Every restart is logged with its cause (exit status or signal,
and the stage's own last error); a stage that needs more than ``supervisor.max_restarts`` restarts within
``restart_window_s`` fails the run (``failed`` says why) instead of letting it look healthy while nothing can
alert. While any stage restarted recently or a camera is offline the pipeline is "degraded", said once per
change. SIGINT/SIGTERM stop every child (SIGTERM, then SIGKILL after a grace period) and remove the private
ipc:// run directory. Metrics from the heartbeats are served with prometheus-client (127.0.0.1 by default) and
summarised in a periodic log line; a stage's counters carry over its restarts, as Prometheus expects.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
import signal
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import zmq

from stream.config import ENDPOINTS, Config
from stream.outputs.prometheus import COUNTERS
from stream.pipeline.alert import AlertStage
from stream.pipeline.capture import CaptureStage
from stream.pipeline.detect import DetectStage
from stream.pipeline.embed import EmbedStage
from stream.pipeline.match import MatchStage
from stream.pipeline.messages import Heartbeat, MessageError, decode
from stream.pipeline.stage import Stage, StageSpec, stage_main
from stream.store.live import LiveDir, Rates

log = logging.getLogger(__name__)

#: What every stage process imports: loaded once, in the fork server, instead of once per stage.
STAGE_PRELOAD = ["numpy", "cv2", "zmq", "onnxruntime", "pydantic", "stream.config", "stream.pipeline.stage",
                 "stream.pipeline.capture", "stream.pipeline.detect", "stream.pipeline.embed", "stream.pipeline.match",
                 "stream.pipeline.alert", "stream.scan.collect"]


def stage_context() -> mp.context.BaseContext:
    """The multiprocessing context stages start in: a fork server that has imported ``STAGE_PRELOAD`` (where the
    platform has one), else spawn.

    Why not spawn: each spawned stage starts a fresh interpreter and imports numpy, OpenCV, ONNX Runtime, pydantic
    and the stage modules again (about 0.6 s of CPU each, five or more stages on two cores), which was most of a
    ``scan``'s start-up. Why not plain fork: the supervisor's process has ZeroMQ I/O threads (and, under ``serve``,
    a web server), and forking a threaded process can deadlock the child; the fork server is a single-threaded
    process started for this, so each stage is a cheap fork of it with nothing running.
    """
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(STAGE_PRELOAD)
    return ctx

STOP_GRACE_S = 5.0


@dataclass
class Child:
    """One stage process and what the supervisor knows of it across restarts."""

    spec: StageSpec
    name: str
    proc: mp.Process | None = None
    started: float = 0.0
    last_beat: float = 0.0
    restarts: int = 0  # consecutive restarts (the backoff); reset after a while running fine
    total_restarts: int = 0
    recent: deque = field(default_factory=deque)  # monotonic times of restarts within the window
    metrics: dict = field(default_factory=dict)  # the latest heartbeat's metrics, counters carried over restarts
    carried: dict = field(default_factory=dict)  # counter totals of earlier incarnations
    last_error: str = ""  # the stage's own account of its last crash
    done: bool = False

    def take_heartbeat(self, metrics: dict) -> None:
        if "crash" in metrics:  # a dying stage's last word: its cause, not its counters
            self.last_error = str(metrics["crash"])
            return
        merged = dict(metrics)
        for k, v in self.carried.items():
            merged[k] = merged.get(k, 0) + v
        self.metrics = merged

    def carry_counters(self) -> None:
        """Before a restart: the counters so far become the base of the next incarnation's."""
        self.carried = {k: self.metrics[k] for k in COUNTERS if isinstance(self.metrics.get(k), (int, float))}


def exit_cause(exitcode: int | None) -> str:
    if exitcode is None:
        return "stopped heartbeating"
    if exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


class Supervisor:
    """Runs one pipeline: capture -> detect -> embed -> match -> ``final`` (the alert stage live; a recorded
    run passes its own last stage, e.g. ``stream.scan``'s collector, so this module never imports upward)."""

    def __init__(self, cfg: Config, *, live: bool = True, options: dict | None = None, log_level: int = logging.WARNING,
                 serve_metrics: bool = True, final: type[Stage] = AlertStage,
                 on_state: Callable[[str, str], None] | None = None) -> None:
        self.cfg, self.live, self.options, self.log_level, self.final = cfg, live, options or {}, log_level, final
        self.ctx = zmq.Context()
        self.children: list[Child] = []
        self.run_dir: Path | None = None
        self.serve_metrics = serve_metrics and cfg.metrics.enabled
        self._last_log = time.monotonic()
        self._latency_seen = 0
        self.prom = None
        self.failed: str | None = None  # why the run cannot go on (too many restarts); None while it can
        self._state = "starting"
        self.on_state = on_state  # told (state, why) on every change, e.g. to print it as JSON
        self.live_dir = LiveDir(cfg.resolve(cfg.live.dir)) if live else None
        self._rates = Rates()
        self._live_written = 0.0

    # ------------------------------------------------------------------ wiring
    def endpoints(self) -> dict[str, str]:
        s = self.cfg.sockets
        base = Path(s.run_dir) if s.run_dir else None
        self.run_dir = Path(tempfile.mkdtemp(prefix="facewatch-", dir=base))
        os.chmod(self.run_dir, 0o700)
        return {k: getattr(s, k) or f"ipc://{self.run_dir}/{k}" for k in ENDPOINTS}

    def specs(self, ep: dict[str, str]) -> list[tuple[str, StageSpec]]:
        conf = self.cfg.model_dump(mode="json")
        mk = lambda cls, **opt: StageSpec(cls, conf, ep, self.live, opt, self.log_level)  # noqa: E731
        out = [(self.final.kind, mk(self.final, **self.options)), ("match", mk(MatchStage, **self.options)),
               ("embed", mk(EmbedStage)), ("detect", mk(DetectStage))]
        if self.live:
            for cam in self.cfg.cameras:
                if cam.enabled:
                    c = cam.model_dump(mode="json")
                    out.append((f"capture:{cam.name}", mk(CaptureStage, camera=c, instance=f"capture:{cam.name}")))
        else:
            out.append(("capture", mk(CaptureStage, camera={"name": "scan"}, files=self.options["files"],
                                      every=self.options.get("every", 1), instance="capture")))
        return out

    def start(self) -> None:
        ep = self.endpoints()
        self.control = self.ctx.socket(zmq.PULL)
        self.control.setsockopt(zmq.LINGER, 0)
        self.control.bind(ep["control"])
        self.spawn = stage_context()
        for name, spec in self.specs(ep):
            child = Child(spec, name)
            self.children.append(child)
            self._start(child)
        if self.serve_metrics:
            from stream.outputs.prometheus import serve

            self.prom = serve(self, self.cfg.metrics.host, self.cfg.metrics.port)

    def _start(self, child: Child) -> None:
        # the environment as it is now: a forked stage would otherwise see the fork server's, from when it started
        child.proc = self.spawn.Process(target=stage_main, args=(child.spec, dict(os.environ)), name=f"facewatch-{child.name}",
                                        daemon=False)
        child.proc.start()
        child.started = child.last_beat = time.monotonic()
        log.info("started stage %s pid %d", child.name, child.proc.pid)

    # ------------------------------------------------------------------ watching
    def poll(self, timeout_s: float = 0.5) -> None:
        """Read heartbeats for up to ``timeout_s``; restart dead or silent stages."""
        end = time.monotonic() + timeout_s
        while True:
            left = end - time.monotonic()
            if left <= 0 or not self.control.poll(int(left * 1000)):
                break
            parts = self.control.recv_multipart()
            try:
                hb = decode(parts, (Heartbeat,))
            except MessageError as exc:
                log.warning("skipped a malformed heartbeat: %s", exc)
                continue
            for c in self.children:
                if c.name == hb.stage or c.spec.kind == hb.stage:
                    c.last_beat = time.monotonic()
                    c.take_heartbeat(hb.metrics)
        now = time.monotonic()
        for c in self.children:
            if c.done or c.proc is None or self.failed:
                continue
            dead = not c.proc.is_alive()
            if dead and c.proc.exitcode == 0 and not self.live:
                c.done = True  # a recorded-mode stage that finished its work
                continue
            silent = now - c.last_beat > self.cfg.supervisor.heartbeat_timeout_s + (20 if c.restarts == 0 and now - c.started < 60 else 0)
            if dead or silent:
                self._restart(c, now, exit_cause(c.proc.exitcode if dead else None), kill=not dead)
        self._update_state()
        self._write_live(now)
        if now - self._last_log >= self.cfg.metrics.log_interval_s:
            self._last_log = now
            log.info("metrics: %s", self.summary())

    def _restart(self, c: Child, now: float, why: str, kill: bool) -> None:
        """Restart ``c`` with a backoff, or fail the run when it restarted too often within the window."""
        if kill:
            c.proc.kill()
            c.proc.join(2)
        if c.last_error:
            why = f"{why} ({c.last_error})"
            c.last_error = ""
        sc = self.cfg.supervisor
        while c.recent and now - c.recent[0] > sc.restart_window_s:
            c.recent.popleft()
        if len(c.recent) >= sc.max_restarts:
            self.failed = (f"stage {c.name} {why}, its {len(c.recent) + 1}th failure within {sc.restart_window_s:.0f} s "
                           f"(supervisor.max_restarts {sc.max_restarts}); stopping")
            log.error("%s", self.failed)
            return
        c.recent.append(now)
        c.total_restarts += 1
        backoff = min(sc.restart_backoff_s * (2 ** min(c.restarts, 5)), 30.0)
        log.warning("stage %s %s; restarting (restart %d within %.0f s)", c.name, why, len(c.recent), sc.restart_window_s)
        if now - c.started > 60:
            c.restarts = 0  # it ran fine for a while: reset the backoff
        time.sleep(min(backoff, 2.0) if c.restarts else 0.0)
        c.restarts += 1
        c.carry_counters()
        self._start(c)

    def camera_states(self, now: float) -> dict[str, dict]:
        """Per live camera: online, frames per second in (captured and sent) and processed (detected), drops."""
        detect = next((c.metrics for c in self.children if c.spec.kind == "detect"), {})
        out = {}
        for c in self.children:
            if c.spec.kind != "capture":
                continue
            cam = c.name.split(":", 1)[1]
            m = c.metrics
            fps_in = self._rates.update(f"in:{cam}", float(m.get("frames_out", 0)), now)
            fps_done = self._rates.update(f"done:{cam}", float(detect.get(f"processed:{cam}", 0)), now)
            online = m.get("is_online")
            out[cam] = {"online": None if online is None else bool(online), "fps_in": fps_in, "fps_processed": fps_done,
                        "dropped": int(detect.get(f"dropped:{cam}", 0)), "skipped": m.get("skipped"),
                        "restarts": c.total_restarts}
        return out

    def _write_live(self, now: float) -> None:
        """cameras.json for the HTTP server, about once a second (``stream.store.live``)."""
        if self.live_dir is None or now - self._live_written < 1.0:
            return
        self._live_written = now
        try:
            self.live_dir.ensure()
            self.live_dir.write_cameras(self.camera_states(now))
        except OSError as exc:
            log.debug("live state not written: %s", exc)

    def state(self) -> tuple[str, str]:
        """("healthy" | "degraded", why) from recent restarts and camera status."""
        now = time.monotonic()
        window = self.cfg.supervisor.restart_window_s
        why = [f"stage {c.name} restarted {len(c.recent)}x in the last {window:.0f} s" for c in self.children
               if c.recent and now - c.recent[-1] <= window]
        why += [f"camera {c.name.split(':', 1)[1]} offline" for c in self.children
                if c.spec.kind == "capture" and self.live and c.metrics.get("is_online") == 0]
        return ("degraded", "; ".join(why)) if why else ("healthy", "")

    def _update_state(self) -> None:
        state, why = self.state()
        if state != self._state:
            if state == "degraded":
                log.warning("pipeline DEGRADED: %s", why)
            elif self._state != "starting":
                log.warning("pipeline healthy again")
            if self.on_state is not None and (state == "degraded" or self._state != "starting"):
                self.on_state(state, why)
            self._state = state

    def summary(self) -> str:
        parts = []
        for c in self.children:
            m = c.metrics
            keys = ("frames_out", "faces_out", "faces_embedded", "alerts", "dropped", "dropped_stale", "dropped_overload", "gated", "proc_ms_p50", "latency_ms_p99")
            vals = " ".join(f"{k}={m[k]:.0f}" if isinstance(m.get(k), float) else f"{k}={m[k]}" for k in keys if k in m)
            parts.append(f"[{c.name} {vals} restarts={c.total_restarts}]")
        return " ".join(parts)

    def pids(self) -> dict[str, int]:
        return {c.name: c.proc.pid for c in self.children if c.proc is not None and c.proc.is_alive()}

    # ------------------------------------------------------------------ stopping
    def stop(self) -> None:
        for c in self.children:
            if c.proc is not None and c.proc.is_alive():
                c.proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for c in self.children:
            if c.proc is not None:
                c.proc.join(max(0.1, deadline - time.monotonic()))
                if c.proc.is_alive():
                    log.warning("stage %s did not stop in time; killing it", c.name)
                    c.proc.kill()
                    c.proc.join(2)
        stop_resource_tracker()
        if self.prom is not None:
            self.prom.shutdown()
        self.ctx.destroy(linger=0)
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)


def stop_resource_tracker() -> None:
    """End multiprocessing's resource tracker, once every stage has exited.

    Spawning a process starts this helper as one more child of ours; it exits by itself only when it sees
    every holder of its pipe gone, i.e. a moment *after* this process has exited. Found because the live
    test saw a child of ``facewatch run`` still alive after ``run`` returned. Stopping it here, after the
    stages were joined, means nothing of a run outlives it. (A private API, present since Python 3.8.)
    """
    from multiprocessing import resource_tracker

    if mp.active_children():  # someone else's processes still hold the tracker: stopping would wait for them
        return
    stop = getattr(getattr(resource_tracker, "_resource_tracker", None), "_stop", None)
    if stop is not None:
        try:
            stop()
        except (OSError, ChildProcessError) as exc:
            log.debug("resource tracker: %s", exc)


def run_until(sup: Supervisor, until, timeout_s: float | None = None, on_tick=None) -> bool:
    """Run ``sup`` until ``until()`` is true (True), or SIGINT/SIGTERM, the timeout or a failed pipeline
    (``sup.failed`` says why) (False); always stops it cleanly, children included, whatever happens."""
    stop = {"flag": False}

    def handler(signum, _frame):
        stop["flag"] = True

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    t0 = time.monotonic()
    ok = False
    try:
        sup.start()
        while not stop["flag"] and not sup.failed:
            sup.poll(0.25)
            if on_tick:
                on_tick(sup)
            if until():
                ok = True
                break
            if timeout_s is not None and time.monotonic() - t0 > timeout_s:
                break
    finally:
        sup.stop()
        for s, h in old.items():
            signal.signal(s, h)
    return ok
