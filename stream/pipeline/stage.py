"""What every pipeline stage process shares: sockets, live/recorded send policy, metrics, heartbeats.

Live mode favours freshness: sends never block; a full queue means the message is dropped and counted.
Recorded mode favours completeness: sends block (backpressure), nothing is dropped.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import zmq

from stream.config import Config
from stream.media.native_logs import quiet_native_logs
from stream.pipeline.messages import Heartbeat, Message, MessageError, decode

log = logging.getLogger(__name__)

LIVE_HWM = 4  # messages queued per socket in live mode before new ones are dropped
RECORDED_HWM = 32


@dataclass
class StageSpec:
    """Everything a stage process needs, picklable for multiprocessing's spawn.

    ``stage_class`` is the ``Stage`` subclass to run; classes pickle by reference, so the child imports
    just its own module and no registry has to import every stage (which would be an import circle).
    """

    stage_class: type["Stage"]
    config: dict
    endpoints: dict[str, str]
    live: bool = True
    options: dict = field(default_factory=dict)
    log_level: int = logging.WARNING

    @property
    def kind(self) -> str:
        return self.stage_class.kind


class StageMetrics:
    """Counters and recent timings of one stage, sent with every heartbeat."""

    def __init__(self) -> None:
        self.counters: dict[str, float] = {}
        self.times_ms: deque[float] = deque(maxlen=2000)
        self.batches: deque[int] = deque(maxlen=2000)
        self.latency_ms: deque[float] = deque(maxlen=5000)
        self.queue_depth = 0
        self.detect_interval_ms: float | None = None  # detect stage, live: the load-adapted interval (LoadInterval)

    def inc(self, name: str, n: float = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def snapshot(self) -> dict:
        out: dict = dict(self.counters)
        out["queue_depth"] = self.queue_depth
        if self.detect_interval_ms is not None:
            out["detect_interval_ms"] = self.detect_interval_ms
        for key, values in (("proc_ms", self.times_ms), ("latency_ms", self.latency_ms)):
            if values:
                arr = np.fromiter(values, float)
                out[f"{key}_p50"] = float(np.percentile(arr, 50))
                out[f"{key}_p99"] = float(np.percentile(arr, 99))
        if self.batches:
            out["batch_mean"] = float(np.mean(self.batches))
            out["batch_max"] = int(max(self.batches))
        if self.latency_ms:
            out["latency_recent_ms"] = list(self.latency_ms)[-200:]
        return out


class Stage:
    """Base of every stage process. Subclasses implement ``loop_once`` (or override ``run``)."""

    kind = "stage"  # the role: capture, detect, embed, match, alert, collect
    name = "stage"  # the instance, in logs and heartbeats (capture:<camera>)

    def __init__(self, spec: StageSpec) -> None:
        logging.basicConfig(level=spec.log_level, format=f"%(asctime)s %(levelname)s {self.name}: %(message)s")
        self.spec = spec
        self.cfg = Config.model_validate(spec.config)  # validated again here: a stage trusts nothing it is sent
        self.live = spec.live
        self.ctx = zmq.Context()
        self.metrics = StageMetrics()
        self.stopping = False
        self._last_beat = 0.0
        self.control = self.ctx.socket(zmq.PUSH)
        self.control.setsockopt(zmq.SNDHWM, 10)
        self.control.setsockopt(zmq.LINGER, 0)
        self.control.connect(spec.endpoints["control"])
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when we stop

    def _on_term(self, *_: object) -> None:
        self.stopping = True

    # -- sockets
    def pull(self, endpoint: str, bind: bool = True) -> zmq.Socket:
        s = self.ctx.socket(zmq.PULL)
        s.setsockopt(zmq.RCVHWM, LIVE_HWM if self.live else RECORDED_HWM)
        s.setsockopt(zmq.LINGER, 0)
        s.bind(endpoint) if bind else s.connect(endpoint)
        return s

    def push(self, endpoint: str, bind: bool = False) -> zmq.Socket:
        s = self.ctx.socket(zmq.PUSH)
        s.setsockopt(zmq.SNDHWM, LIVE_HWM if self.live else RECORDED_HWM)
        s.setsockopt(zmq.LINGER, 0 if self.live else 5000)
        s.bind(endpoint) if bind else s.connect(endpoint)
        return s

    def send(self, sock: zmq.Socket, msg: Message, *, force: bool = False) -> bool:
        """Live: never block, count a drop when the receiver is behind. Recorded (or ``force``): block."""
        parts = msg.encode()
        if self.live and not force:
            try:
                sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
                return True
            except zmq.Again:
                self.metrics.inc("dropped")
                return False
        while not self.stopping:
            try:
                sock.send_multipart(parts, copy=False, flags=zmq.NOBLOCK)
                return True
            except zmq.Again:
                self.beat()
                time.sleep(0.002)
        return False

    def recv(self, sock: zmq.Socket, timeout_ms: int, expect: tuple) -> Message | None:
        """One message or None on timeout; malformed messages are logged, counted and skipped."""
        if not sock.poll(timeout_ms):
            return None
        parts = sock.recv_multipart(copy=False)
        try:
            return decode([p.buffer for p in parts], expect)
        except MessageError as exc:
            self.metrics.inc("malformed")
            log.warning("skipped a malformed message: %s", exc)
            return None

    def gather_batch(self, sock: zmq.Socket, expect: tuple, max_wait_ms: float, full, idle_gap_ms: int | None = None) -> list:
        """One batch: the first message (waiting up to 200 ms), then more until ``full(batch)``, an
        end-of-stream, ``max_wait_ms`` since the first, or (with ``idle_gap_ms``) a quiet input."""
        first = self.recv(sock, 200, expect)
        if first is None:
            return []
        batch = [first]
        deadline = time.monotonic() + max_wait_ms / 1000
        while not batch[-1].eos and not full(batch):
            left_ms = int((deadline - time.monotonic()) * 1000) + 1
            if left_ms <= 1:
                break
            m = self.recv(sock, min(left_ms, idle_gap_ms) if idle_gap_ms else left_ms, expect)
            if m is not None:
                batch.append(m)
            elif idle_gap_ms:
                break
        return batch

    def recv_all(self, sock: zmq.Socket, expect: tuple, limit: int = 10_000) -> list[Message]:
        out = []
        while len(out) < limit and sock.poll(0):
            msg = self.recv(sock, 0, expect)
            if msg is not None:
                out.append(msg)
        return out

    # -- heartbeat
    def beat(self, force: bool = False) -> None:
        now = time.time()
        if force or now - self._last_beat >= 0.5:
            self._last_beat = now
            hb = Heartbeat(stage=self.spec.options.get("instance", self.name), pid=os.getpid(), ts_capture=now,
                           metrics=self.metrics.snapshot())
            try:
                self.control.send_multipart(hb.encode(), flags=zmq.NOBLOCK)
            except zmq.Again:
                pass

    def loop_once(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self) -> None:
        try:
            while not self.stopping:
                self.loop_once()
                self.beat()
        finally:
            self.beat(force=True)
            self.close()

    def close(self) -> None:
        self.ctx.destroy(linger=0 if self.live else 2000)


def stage_main(spec: StageSpec, environ: dict[str, str] | None = None) -> None:
    """Entry point of every stage process (picklable for spawn). ``environ``: the supervisor's environment when it
    started the stage, applied first (a stage forked by the fork server would otherwise have the server's).

    The process title names the role (``facewatch: detect``), so ``ps``/``top`` tell the stages apart. A crash
    is one log line and one last heartbeat carrying its cause, so the supervisor can say why it restarts the
    stage, instead of a traceback on the operator's terminal (it is logged at debug level).
    """
    instance = spec.options.get("instance", spec.kind)
    try:  # first: setproctitle finds the argv memory it rewrites only while the environment is untouched
        import setproctitle

        setproctitle.setproctitle(f"facewatch: {instance}")
    except ImportError:  # pragma: no cover - a declared dependency; only cosmetic if missing
        pass
    if environ is not None and environ != os.environ:
        os.environ.clear()
        os.environ.update(environ)
    quiet_native_logs(debug=spec.log_level <= logging.DEBUG)
    try:
        spec.stage_class(spec).run()
    except Exception as exc:
        cause = f"{type(exc).__name__}: {exc}"
        logging.basicConfig(level=spec.log_level, format=f"%(asctime)s %(levelname)s {instance}: %(message)s")
        log.error("stage %s crashed: %s", instance, cause)
        log.debug("stage %s crash", instance, exc_info=True)
        _report_crash(spec, instance, cause)
        raise SystemExit(1) from None


def _report_crash(spec: StageSpec, instance: str, cause: str) -> None:
    """Send one heartbeat with the crash cause on a socket of its own (the stage's may never have existed)."""
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 1000)
        sock.connect(spec.endpoints["control"])
        hb = Heartbeat(stage=instance, pid=os.getpid(), ts_capture=time.time(), metrics={"crash": cause[:500]})
        sock.send_multipart(hb.encode(), flags=zmq.NOBLOCK)
        sock.close()
    except zmq.ZMQError:
        pass
    finally:
        ctx.term()
