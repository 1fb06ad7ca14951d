"""Alert stage (live): alert rules and cooldown, snapshots, the event store first, then the sinks.

Why the store first: a webhook or broker that is down, a crash of this stage or a restart must never lose an
alert. Each alert is stored with one outbox entry per sink (JSONL, webhook, ZeroMQ PUB, MQTT) in one
transaction; one
``DeliveryWorker`` thread per sink sends them (``stream.outputs.delivery``), so a dead receiver never delays this
stage, another sink or the next alert. The console is the operator's terminal and is written directly. Recorded
video goes to ``stream.scan`` instead, which collects its events in video time into a report.
"""
from __future__ import annotations

import logging
import time

from engines.face_model import crop_sharpness
from stream.outputs.console import ConsoleSink
from stream.outputs.delivery import DeliveryWorker
from stream.outputs.jsonl import JsonlSink
from stream.outputs.mqtt import MqttPublisher
from stream.outputs.webhook import WebhookSink
from stream.outputs.zmq_pub import ZmqPubSink
from stream.pipeline.decisions import AlertRules, Cooldown, UnknownGate
from stream.pipeline.messages import CameraStatus, Decision
from stream.pipeline.stage import Stage, StageSpec
from stream.records import Event
from stream.store.event_index import EventIndex, visitor_id
from stream.store.events import STATES, EventStore
from stream.store.snapshots import Snapshots

log = logging.getLogger(__name__)

METRICS_EVERY_S = 1.0  # delivery counts are read from the store this often (not per message)


class AlertStage(Stage):
    kind = name = "alert"

    def __init__(self, spec: StageSpec) -> None:
        super().__init__(spec)
        a = self.cfg.alerts
        self.rules = AlertRules({c.name: c.alert_on for c in self.cfg.cameras})
        self.cooldown = Cooldown(a.cooldown_s)
        self.unknown_gate = UnknownGate({c.name: self.cfg.unknown_min_face(c.name) for c in self.cfg.cameras},
                                        self.cfg.unknown.min_face, self.cfg.unknown.min_sharpness)
        self.inp = self.pull(spec.endpoints["decisions"])
        self.store_path = self.cfg.resolve(a.store)
        self.store = EventStore(self.store_path)
        self.index = EventIndex(self.store, on_progress=lambda: self.beat(force=True))  # groups unknown visitors; rebuilt from the store when missing
        self.snaps = Snapshots(self.cfg.resolve(a.snapshots))
        self.console = ConsoleSink(as_json=bool(spec.options.get("console_json"))) if a.sinks.console else None
        self.mqtt: MqttPublisher | None = None
        if a.sinks.mqtt is not None:  # alerts through the outbox; camera status and availability directly
            self.mqtt = MqttPublisher(a.sinks.mqtt, [c.name for c in self.cfg.cameras if c.enabled], self.cfg.public_url())
            self.mqtt.start()
        outbox = {"jsonl": JsonlSink(self.cfg.resolve(a.sinks.jsonl)) if a.sinks.jsonl else None,
                  "mqtt": self.mqtt,
                  "webhook": WebhookSink(a.sinks.webhook) if a.sinks.webhook else None,
                  "zmq_pub": ZmqPubSink(self.ctx, a.sinks.zmq_pub) if a.sinks.zmq_pub else None}
        self.workers = [DeliveryWorker(self.store_path, name, sink, a.delivery) for name, sink in outbox.items() if sink]
        for w in self.workers:  # they also send what a previous run left pending
            w.start()
        self._metrics_at = 0.0

    def loop_once(self) -> None:
        self.delivery_metrics()
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
        if self.mqtt is not None:
            self.mqtt.status(m.camera, m.online, m.detail, m.ts_capture)
        if self.console:
            self.console.status(m.camera, m.online, m.detail)

    def on_decision(self, m: Decision) -> None:
        if not self.rules.wanted(m.camera, m.kind):
            return
        unknown_id = None
        cooldown_key = m.identity
        if m.kind == "unknown":
            why = self.unknown_gate.reason(m.camera, m.box, crop_sharpness(m.chip) if m.chip is not None else None)
            if why is not None:
                self.metrics.inc(f"unknown_gated_{why}")
                return
            unknown_id = visitor_id(self.store, self.index, m.embedding, self.cfg.group_threshold())
            if unknown_id is not None:
                cooldown_key = f"\0visitor:{unknown_id}"  # names cannot hold control characters: no clash
        now = time.time()
        if not self.cooldown.allow(m.camera, cooldown_key, now):
            self.metrics.inc("suppressed_cooldown")
            return
        latency_ms = (now - m.ts_capture) * 1000
        chip_path, frame_path = self.snaps.write(m.camera, m.ts_capture, m.track_id, m.chip, m.image)
        event = self.store.add(Event(  # stored, with its outbox entries, before any delivery
            ts=now, ts_capture=m.ts_capture, camera=m.camera, kind=m.kind, identity=m.identity, score=m.score,
            threshold=m.threshold, track_id=m.track_id, latency_ms=latency_ms, box=m.box, chip_path=chip_path,
            frame_path=frame_path, unknown_id=unknown_id, rule=m.rule or None, chips_used=m.chips_used or None,
            embedder=self.cfg.embedder_id), sinks=[w.sink_name for w in self.workers],
            embedding=m.embedding)
        for w in self.workers:
            w.wake()
        self.metrics.inc("alerts")
        self.metrics.latency_ms.append(latency_ms)
        if m.embedding is not None:
            self.index.sync()
            self.index.maybe_save()
        if self.console:
            try:
                self.console.send(event)
            except (OSError, ValueError) as exc:  # a closed terminal must not stop alerting
                log.warning("console sink failed: %s", exc)

    def delivery_metrics(self, force: bool = False) -> None:
        """Per sink: deliveries pending / delivered / failed (from the store: they survive restarts), the age of
        the oldest pending one, and this run's give-ups and failed tries; into the heartbeat counters."""
        now = time.time()
        if not self.workers or (not force and now - self._metrics_at < METRICS_EVERY_S):
            return
        self._metrics_at = now
        stats = self.store.delivery_stats(now)
        c = self.metrics.counters
        for w in self.workers:
            s = stats.get(w.sink_name, {})
            for state in STATES:
                c[f"delivery:{w.sink_name}:{state}"] = s.get(state, 0)
            c[f"delivery:{w.sink_name}:oldest_pending_s"] = s.get("oldest_pending_s", 0.0)
            c[f"delivery:{w.sink_name}:given_up"] = w.given_up
            c[f"delivery:{w.sink_name}:try_failures"] = w.try_failures

    def close(self) -> None:
        for w in self.workers:
            w.stop()
        for w in self.workers:
            w.join(timeout=5)
        if self.mqtt is not None:  # after the workers: their last tries could still use it
            self.mqtt.close()
        try:
            self.index.save()
        except OSError as exc:  # only a cache: the next start rebuilds it from the store
            log.warning("event index not saved: %s", exc)
        self.store.close()
        super().close()
