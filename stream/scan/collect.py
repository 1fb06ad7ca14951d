"""Collect stage: the last stage of a recorded-video run (``facewatch scan``), in place of the alert stage.

It feeds every decision and each file's ``SourceSummary`` (what capture read of it) to ``ScanReportBuilder``
and, once every source has ended and been summarised, writes the report atomically (0600: it names people) to
the path the scan runner waits for. With ``scan --store`` each event also goes into the event store, with its
snapshots, embedding and visitor group, marked ``source: scan`` with its file and video time, so recorded
video shows up in the web UI and the API beside live events (no sink deliveries: nobody is alerted about the past).
"""
from __future__ import annotations

import time
from pathlib import Path

from engines.files import atomic_write_bytes
from stream.pipeline.decisions import AlertRules, Cooldown
from stream.pipeline.messages import Decision, SourceSummary
from stream.pipeline.stage import Stage, StageSpec
from stream.records import Event
from stream.scan.report import ScanReportBuilder
from stream.store.event_index import EventIndex, visitor_id
from stream.store.events import EventStore
from stream.store.snapshots import Snapshots


class CollectStage(Stage):
    kind = name = "collect"

    def __init__(self, spec: StageSpec) -> None:
        super().__init__(spec)
        cfg = self.cfg
        self.console = cfg.alerts.sinks.console
        self.inp = self.pull(spec.endpoints["decisions"])
        self.builder = ScanReportBuilder(dict(spec.options["files"]), AlertRules({c.name: c.alert_on for c in cfg.cameras}),
                                         Cooldown(cfg.alerts.cooldown_s), observations=bool(spec.options.get("observations")))
        self.paths = dict(spec.options["files"])
        self.store: EventStore | None = None
        if spec.options.get("store"):
            self.store = EventStore(cfg.resolve(cfg.alerts.store))
            self.index = EventIndex(self.store, on_progress=lambda: self.beat(force=True))
            self.snaps = Snapshots(cfg.resolve(cfg.alerts.snapshots))

    def loop_once(self) -> None:
        m = self.recv(self.inp, 200, (Decision, SourceSummary))
        if m is None:
            return
        if isinstance(m, SourceSummary) or m.kind == "eos":
            if isinstance(m, SourceSummary):
                self.builder.source(m)
            else:
                self.builder.end(m.camera)
            if self.builder.complete:
                self.finish()
            return
        e = self.builder.decision(m.camera, m.kind, m.track_id, m.identity, m.score, m.threshold, m.video_time,
                                  m.frame_index, m.track_start, m.box)
        if e is not None and self.store is not None:
            self.keep(m, e.video_time)
        if e is not None and self.console:
            print(f"{m.camera} t={e.video_time:.2f}s frame {e.frame_index}: {e.identity or 'UNKNOWN face'} "
                  f"score {e.score:.4f}", flush=True)

    def keep(self, m: Decision, video_time: float) -> None:
        """Store one event of recorded video (``scan --store``) with its snapshots and visitor group."""
        assert self.store is not None
        now = time.time()
        unknown_id = (visitor_id(self.store, self.index, m.embedding, self.cfg.group_threshold())
                      if m.kind == "unknown" else None)
        chip_path, frame_path = self.snaps.write(m.camera, now, m.track_id, m.chip, m.image)
        self.store.add(Event(ts=now, ts_capture=now, camera=m.camera, kind=m.kind, identity=m.identity, score=m.score,
                             threshold=m.threshold, track_id=m.track_id, latency_ms=None, box=m.box or None,
                             chip_path=chip_path, frame_path=frame_path, source="scan",
                             video_file=str(self.paths.get(m.camera, m.camera)), video_time=video_time,
                             unknown_id=unknown_id, rule=m.rule or None, chips_used=m.chips_used or None,
                             embedder=self.cfg.embedder_id), embedding=m.embedding)
        self.metrics.inc("stored")
        if m.embedding is not None:
            self.index.sync()

    def finish(self) -> None:
        report = self.builder.build()
        atomic_write_bytes(Path(self.spec.options["report_path"]), report.model_dump_json(indent=1).encode(), mode=0o600)
        self.stopping = True

    def close(self) -> None:
        if self.store is not None:
            try:
                self.index.save()
            finally:
                self.store.close()
        super().close()
