"""Alert stage (live): alert rules and cooldown, snapshots, the event store first, then the sinks.

Why the store first: a webhook that is down, a crash of this stage or a restart must never lose an alert;
deliveries are retried from what is stored. Recorded video goes to ``stream.scan`` instead, which
collects its events in video time into a report.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import cv2
import numpy as np

from engines.files import atomic_write_bytes
from stream.outputs.console import ConsoleSink
from stream.outputs.jsonl import JsonlSink
from stream.outputs.webhook import WebhookSink
from stream.outputs.zmq_pub import ZmqPubSink
from stream.pipeline.decisions import AlertRules, Cooldown
from stream.pipeline.messages import CameraStatus, Decision
from stream.pipeline.stage import Stage, StageSpec
from stream.records import Event
from stream.store.events import EventStore

log = logging.getLogger(__name__)


def write_jpeg(path: Path, image: np.ndarray, rgb: bool = False) -> None:
    ok, buf = cv2.imencode(".jpg", image[:, :, ::-1] if rgb else image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if ok:
        atomic_write_bytes(path, buf.tobytes(), mode=0o600)  # face images are biometric data


class AlertStage(Stage):
    kind = name = "alert"

    def __init__(self, spec: StageSpec) -> None:
        super().__init__(spec)
        a = self.cfg.alerts
        self.rules = AlertRules({c.name: c.alert_on for c in self.cfg.cameras})
        self.cooldown = Cooldown(a.cooldown_s)
        self.inp = self.pull(spec.endpoints["decisions"])
        self.store_path = self.cfg.resolve(a.store)
        self.store = EventStore(self.store_path)
        self.snap_dir = self.cfg.resolve(a.snapshots)
        self.snap_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.snap_dir, 0o700)
        self.console = ConsoleSink() if a.sinks.console else None
        self.webhook = WebhookSink(a.sinks.webhook, a.delivery, self.store_path) if a.sinks.webhook else None
        # Synchronous sinks first; the webhook queues (it retries from the store on its own thread).
        self.sinks = [s for s in (self.console, JsonlSink(self.cfg.resolve(a.sinks.jsonl)) if a.sinks.jsonl else None,
                                  ZmqPubSink(self.ctx, a.sinks.zmq_pub) if a.sinks.zmq_pub else None, self.webhook) if s]
        if self.webhook is not None:
            self.webhook.start()

    def loop_once(self) -> None:
        m = self.recv(self.inp, 200, (Decision, CameraStatus))
        if m is None:
            return
        if isinstance(m, CameraStatus):
            self.on_status(m)
        else:
            self.on_decision(m)

    def on_status(self, m: CameraStatus) -> None:
        self.metrics.inc("status_events")
        self.store.add_status(m.camera, m.online, m.detail, m.ts_capture)
        if self.console:
            self.console.status(m.camera, m.online, m.detail)

    def snapshots(self, m: Decision) -> tuple[str | None, str | None]:
        """Write the face chip and the full frame (0600 JPEGs); their paths."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(m.ts_capture)) + f"-{int(m.ts_capture * 1000) % 1000:03d}"
        folder = self.snap_dir / m.camera
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        chip_path = frame_path = None
        if m.chip is not None:
            chip_path = folder / f"{stamp}-{m.track_id}-face.jpg"
            write_jpeg(chip_path, m.chip, rgb=True)
        if m.image is not None:
            frame_path = folder / f"{stamp}-{m.track_id}-frame.jpg"
            write_jpeg(frame_path, m.image)
        return (str(chip_path) if chip_path else None), (str(frame_path) if frame_path else None)

    def on_decision(self, m: Decision) -> None:
        if not self.rules.wanted(m.camera, m.kind):
            return
        now = time.time()
        if not self.cooldown.allow(m.camera, m.identity, now):
            self.metrics.inc("suppressed_cooldown")
            return
        latency_ms = (now - m.ts_capture) * 1000
        chip_path, frame_path = self.snapshots(m)
        event = self.store.add(Event(  # stored before any delivery
            ts=now, ts_capture=m.ts_capture, camera=m.camera, kind=m.kind, identity=m.identity, score=m.score,
            threshold=m.threshold, track_id=m.track_id, latency_ms=latency_ms, box=m.box, chip_path=chip_path,
            frame_path=frame_path, webhook_state="pending" if self.webhook else "none"))
        self.metrics.inc("alerts")
        self.metrics.latency_ms.append(latency_ms)
        for sink in self.sinks:
            try:
                sink.send(event)
            except Exception as exc:  # a sink failing must not lose the others
                log.warning("sink %s failed: %s", type(sink).__name__, exc)

    def close(self) -> None:
        if self.webhook is not None:
            self.webhook.stop()
            self.webhook.join(timeout=2)
        super().close()
