"""Alert stage: cooldown per (camera, identity), snapshots, event store first, then the sinks.

Recorded mode (``facewatch scan``) collects events in video time and per-identity appearances instead,
and writes the report when every source has ended.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import cv2
import numpy as np

from engines.models import atomic_write_bytes
from stream.config import Config
from stream.events import EventStore
from stream.messages import CameraStatus, Decision
from stream.sinks import JsonlSink, WebhookSink, ZmqPubSink, console_line
from stream.stage import Stage, StageSpec

log = logging.getLogger(__name__)


def write_jpeg(path: Path, image: np.ndarray, rgb: bool = False) -> None:
    ok, buf = cv2.imencode(".jpg", image[:, :, ::-1] if rgb else image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if ok:
        atomic_write_bytes(path, buf.tobytes(), mode=0o600)  # face images are biometric data


class AlertStage(Stage):
    name = "alert"

    def __init__(self, spec: StageSpec) -> None:
        super().__init__(spec)
        self.cfg = Config.model_validate(spec.config)
        self.rules = {c.name: c.alert_on for c in self.cfg.cameras}
        self.last_alert: dict[tuple[str, str | None], float] = {}
        self.inp = self.pull(spec.endpoints["decisions"])
        self.console = bool(self.cfg.alerts.sinks.console)
        if self.live:
            a = self.cfg.alerts
            self.store_path = self.cfg.resolve(a.store)
            self.store = EventStore(self.store_path)
            self.snap_dir = self.cfg.resolve(a.snapshots)
            self.snap_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(self.snap_dir, 0o700)
            self.jsonl = JsonlSink(self.cfg.resolve(a.sinks.jsonl)) if a.sinks.jsonl else None
            self.pub = ZmqPubSink(self.ctx, a.sinks.zmq_pub) if a.sinks.zmq_pub else None
            self.webhook = None
            if a.sinks.webhook:
                self.webhook = WebhookSink(a.sinks.webhook, self.store_path)
                self.webhook.start()
        else:
            self.sources = dict(spec.options["files"])  # camera name -> path
            self.ended: set[str] = set()
            self.report: dict[str, dict] = {n: {"file": p, "camera": n, "events": [], "tracks": {}, "observations": [],
                                                "frames": 0, "error": None} for n, p in self.sources.items()}

    def loop_once(self) -> None:
        m = self.recv(self.inp, 200, (Decision, CameraStatus))
        if m is None:
            return
        if isinstance(m, CameraStatus):
            self.on_status(m)
        elif self.live:
            self.on_live(m)
        else:
            self.on_recorded(m)

    def on_status(self, m: CameraStatus) -> None:
        self.metrics.inc("status_events")
        if self.live:
            self.store.add_status(m.camera, m.online, m.detail, m.ts_capture)
            if self.console:
                print(f"CAMERA {m.camera} {'ONLINE' if m.online else 'OFFLINE'}: {m.detail}", flush=True)
        elif m.camera in self.report and not m.online:
            self.report[m.camera]["error"] = m.detail

    def wanted(self, m: Decision) -> bool:
        rule = self.rules.get(m.camera, "watchlist")
        return (m.kind == "watchlist" and rule in ("watchlist", "both")) or (m.kind == "unknown" and rule in ("unknown", "both"))

    def on_live(self, m: Decision) -> None:
        if m.kind not in ("watchlist", "unknown") or not self.wanted(m):
            return
        key = (m.camera, m.identity)
        now = time.time()
        if now - self.last_alert.get(key, -1e18) < self.cfg.alerts.cooldown_s:
            self.metrics.inc("suppressed_cooldown")
            return
        self.last_alert[key] = now
        latency_ms = (now - m.ts_capture) * 1000
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(m.ts_capture)) + f"-{int(m.ts_capture * 1000) % 1000:03d}"
        base = self.snap_dir / m.camera / f"{stamp}-{m.track_id}"
        (self.snap_dir / m.camera).mkdir(parents=True, exist_ok=True, mode=0o700)
        chip_path = frame_path = None
        if m.chip is not None:
            chip_path = base.with_name(base.name + "-face.jpg")
            write_jpeg(chip_path, m.chip, rgb=True)
        if m.image is not None:
            frame_path = base.with_name(base.name + "-frame.jpg")
            write_jpeg(frame_path, m.image)
        event = {"ts": now, "ts_capture": m.ts_capture, "camera": m.camera, "kind": m.kind, "identity": m.identity,
                 "score": m.score, "threshold": m.threshold, "track_id": m.track_id, "latency_ms": latency_ms,
                 "box": m.box, "chip_path": str(chip_path) if chip_path else None,
                 "frame_path": str(frame_path) if frame_path else None,
                 "webhook_state": "pending" if self.webhook else "none"}
        event["id"] = self.store.add(event)  # stored before any delivery
        self.metrics.inc("alerts")
        self.metrics.latency_ms.append(latency_ms)
        if self.console:
            print(console_line(event), flush=True)
        for sink in (self.jsonl, self.pub):
            if sink is not None:
                try:
                    sink.send(event)
                except Exception as exc:  # a sink failing must not lose the others
                    log.warning("sink %s failed: %s", type(sink).__name__, exc)
        if self.webhook is not None:
            self.webhook.submit(event)

    def on_recorded(self, m: Decision) -> None:
        rep = self.report.get(m.camera)
        if rep is None:
            return
        if m.kind == "eos":
            rep["frames"] = m.frame_index or 0
            self.ended.add(m.camera)
            if self.ended >= set(self.sources):
                self.finish()
            return
        tr = rep["tracks"].setdefault(str(m.track_id), {"identity": None, "start": m.track_start, "end": m.video_time,
                                                         "best_score": None})
        tr["end"] = max(tr["end"] or 0.0, m.video_time or 0.0)
        if m.kind == "observation":
            if self.spec.options.get("observations"):
                rep["observations"].append([m.frame_index, m.track_id, m.box])
            return
        if m.kind == "watchlist":
            tr["identity"], tr["best_score"] = m.identity, m.score
        if not self.wanted(m):
            return
        key = (m.camera, m.identity)
        if (m.video_time or 0) - self.last_alert.get(key, -1e18) < self.cfg.alerts.cooldown_s:
            return
        self.last_alert[key] = m.video_time or 0.0
        rep["events"].append({"kind": m.kind, "identity": m.identity, "score": round(m.score, 4), "threshold": m.threshold,
                              "video_time": round(m.video_time or 0.0, 3), "frame_index": m.frame_index,
                              "track_id": m.track_id, "track_start": m.track_start, "box": m.box})
        if self.console:
            who = m.identity or "UNKNOWN face"
            print(f"{m.camera} t={m.video_time:.2f}s frame {m.frame_index}: {who} score {m.score:.4f}", flush=True)

    def finish(self) -> None:
        for rep in self.report.values():
            appear: dict[str, dict] = {}
            for tr in rep["tracks"].values():
                if tr["identity"] is None:
                    continue
                a = appear.setdefault(tr["identity"], {"first_seen": tr["start"], "last_seen": tr["end"], "best_score": tr["best_score"]})
                a["first_seen"] = min(a["first_seen"], tr["start"])
                a["last_seen"] = max(a["last_seen"], tr["end"])
                a["best_score"] = max(a["best_score"], tr["best_score"])
            rep["appearances"] = appear
            rep["track_identity"] = {k: v["identity"] for k, v in rep["tracks"].items()}
            del rep["tracks"]
            if not self.spec.options.get("observations"):
                del rep["observations"]
        out = Path(self.spec.options["report_path"])
        atomic_write_bytes(out, json.dumps({"videos": list(self.report.values())}, indent=1).encode(), mode=0o600)
        self.stopping = True

    def close(self) -> None:
        if self.live and self.webhook is not None:
            self.webhook.stop()
            self.webhook.join(timeout=2)
        super().close()
