"""Recorded-video processing: run video files through the pipeline stages and return their ``ScanReport``.

Recorded mode favours completeness: every (Nth) frame is processed with backpressure, nothing is dropped,
and the collect stage writes the report when every file has ended. Each file's report says whether it was
read completely (``VideoReport.status``); the caller decides what a partial result means for it.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tqdm import tqdm

from stream.config import Config
from stream.pipeline.capture import probe_frames
from stream.pipeline.supervisor import Supervisor, run_until
from stream.records import ScanReport
from stream.scan.collect import CollectStage


class ScanError(RuntimeError):
    """The scan did not finish (interrupted or timed out)."""


def source_names(videos: list[str]) -> list[tuple[str, str]]:
    """(camera name, path) per video: the file stem made safe and unique, in input order."""
    names: set[str] = set()
    out = []
    for v in videos:
        stem = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in Path(v).stem) or "video"
        name, k = stem, 1
        while name in names:
            k += 1
            name = f"{stem}-{k}"
        names.add(name)
        out.append((name, str(v)))
    return out


def frames_to_process(videos: list[str], every: int) -> int:
    """Frame count the progress bar aims at: every ``every``-th frame of what the containers announce (files that
    say nothing, or are not regular files, count 0; they are checked before being opened, so this never hangs)."""
    total = 0
    for v in videos:
        n = probe_frames(str(v))
        total += -(-n // every) if n else 0  # frames 0, every, 2*every, ... of n
    return total


def frames_processed(sup: Supervisor) -> int:
    """Frames the detect stage has finished, by its last heartbeat: what the progress bar shows. Not the frames
    capture has read, which run ahead of the pipeline by the queues' depth."""
    return int(next((c.metrics.get("frames_in", 0) for c in sup.children if c.spec.kind == "detect"), 0))


def scan_videos(cfg: Config, videos: list[str], every: int = 1, gallery: str | None = None, observations: bool = False,
                progress: bool = True, timeout_s: float | None = None, store: bool = False) -> ScanReport:
    """Run recorded videos through the pipeline stages (backpressure, no drops) and return the report;
    ``store``: also put its events into the event store (``alerts.store``)."""
    files = source_names(videos)
    tmp = Path(tempfile.mkdtemp(prefix="facewatch-scan-"))
    report_path = tmp / "report.json"
    options = {"files": files, "every": every, "report_path": str(report_path), "observations": observations,
               "store": store}
    if gallery:
        options["gallery"] = gallery
    cfg = cfg.model_copy(deep=True)
    cfg.alerts.sinks.console = False  # the CLI prints the report; per-event lines would interleave with the bar
    sup = Supervisor(cfg, live=False, options=options, serve_metrics=False, final=CollectStage)
    bar = tqdm(total=frames_to_process(videos, every), unit="frame", desc="scan", disable=not progress)

    def tick(s: Supervisor) -> None:
        bar.update(max(0, frames_processed(s) - bar.n))

    try:
        ok = run_until(sup, until=report_path.exists, timeout_s=timeout_s, on_tick=tick)
        if not ok:
            bar.close()
            raise ScanError("scan did not finish (interrupted or timed out)")
        report = ScanReport.model_validate_json(report_path.read_text())
        # detect's last heartbeat may predate the report: end on what went through every stage
        bar.update(max(0, sum(v.frames_processed for v in report.videos) - bar.n))
        bar.close()
        return report
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
