"""Collect stage: the last stage of a recorded-video run (``facewatch scan``), in place of the alert stage.

It feeds every decision and each file's ``SourceSummary`` (what capture read of it) to ``ScanReportBuilder``
and, once every source has ended and been summarised, writes the report atomically (0600: it names people) to
the path the scan runner waits for.
"""
from __future__ import annotations

from pathlib import Path

from engines.files import atomic_write_bytes
from stream.pipeline.decisions import AlertRules, Cooldown
from stream.pipeline.messages import Decision, SourceSummary
from stream.pipeline.stage import Stage, StageSpec
from stream.scan.report import ScanReportBuilder


class CollectStage(Stage):
    kind = name = "collect"

    def __init__(self, spec: StageSpec) -> None:
        super().__init__(spec)
        cfg = self.cfg
        self.console = cfg.alerts.sinks.console
        self.inp = self.pull(spec.endpoints["decisions"])
        self.builder = ScanReportBuilder(dict(spec.options["files"]), AlertRules({c.name: c.alert_on for c in cfg.cameras}),
                                         Cooldown(cfg.alerts.cooldown_s), observations=bool(spec.options.get("observations")))

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
        if e is not None and self.console:
            print(f"{m.camera} t={e.video_time:.2f}s frame {e.frame_index}: {e.identity or 'UNKNOWN face'} "
                  f"score {e.score:.4f}", flush=True)

    def finish(self) -> None:
        report = self.builder.build()
        atomic_write_bytes(Path(self.spec.options["report_path"]), report.model_dump_json(indent=1).encode(), mode=0o600)
        self.stopping = True
