"""``run`` (live cameras), ``events``, ``scan`` (recorded video) and ``demo``: parse, call, print."""
from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
from pathlib import Path

import click

from engines.model_store import ModelStore
from stream.cli.common import UserError, emit, gallery_dir, gallery_option, get_analyzer, get_config, json_option, wants_json
from stream.records import ScanReport
from stream.store.events import EventStore


@click.command()
@json_option
@click.pass_context
def run(ctx: click.Context) -> None:
    """Live monitoring of the configured cameras until stopped (Ctrl-C / SIGTERM)."""
    from stream.pipeline.supervisor import Supervisor, run_until

    cfg = get_config(ctx)
    cameras = [c for c in cfg.cameras if c.enabled]
    if not cameras:
        raise UserError("no enabled camera in the config (cameras: [...])")
    ModelStore(cfg.home).prepare()  # convert once here, not in every stage
    sup = Supervisor(cfg, live=True, log_level=min(logging.getLogger().level, logging.INFO))
    click.echo(f"facewatch: monitoring {len(cameras)} camera(s); "
               f"metrics on http://{cfg.metrics.host}:{cfg.metrics.port}/metrics; Ctrl-C to stop", err=True)
    run_until(sup, until=lambda: False)


def _parse_since(since: str | None) -> float:
    if not since:
        return 0.0
    try:
        return float(since)
    except ValueError:
        try:
            return dt.datetime.fromisoformat(since).timestamp()
        except ValueError:
            raise UserError(f"--since {since!r}: use epoch seconds or an ISO date/time") from None


@click.command()
@click.option("--since", default=None, help="only events at or after this time: epoch seconds or ISO date/time")
@json_option
@click.pass_context
def events(ctx: click.Context, since: str | None) -> None:
    """List stored alert events."""
    cfg = get_config(ctx)
    t = _parse_since(since)
    path = cfg.resolve(cfg.alerts.store)
    evs = EventStore(path).events(since=t) if path.exists() else []
    emit(ctx, {"events": [e.model_dump() for e in evs]}, "\n".join(e.console_line() for e in evs) if evs else "(no events)")


def _annotate(report: ScanReport, annotate: Path) -> None:
    from stream.scan.annotate import annotate_video

    for v in report.videos:
        if v.observations:
            out = annotate if len(report.videos) == 1 else annotate.with_name(f"{annotate.stem}-{v.camera}{annotate.suffix}")
            annotate_video(v.file, v.observations, v.track_identity, out)


@click.command()
@click.argument("videos", nargs=-1, required=True, type=click.Path())
@gallery_option
@click.option("--every", default=1, show_default=True, type=click.IntRange(1), help="process every Nth frame")
@click.option("--json-out", type=click.Path(dir_okay=False), default=None, help="write the report here")
@click.option("--annotate", type=click.Path(dir_okay=False), default=None, help="write an annotated video (boxes, names)")
@json_option
@click.pass_context
def scan(ctx: click.Context, videos: tuple[str, ...], gallery: str | None, every: int, json_out: str | None,
         annotate: str | None) -> None:
    """Scan recorded video: every (Nth) frame, events in video time, per-identity appearances."""
    from stream.scan.run import ScanError, scan_videos

    cfg = get_config(ctx)
    ModelStore(cfg.home).prepare()
    try:
        report = scan_videos(cfg, list(videos), every, gallery or str(gallery_dir(ctx, None)), bool(annotate),
                             progress=not wants_json(ctx))
    except ScanError as exc:
        raise UserError(str(exc)) from None
    if annotate:
        _annotate(report, Path(annotate))
    payload = report.model_dump(mode="json", exclude={"videos": {"__all__": {"observations"}}})
    if json_out:
        Path(json_out).write_text(ScanReport.model_validate(payload).model_dump_json(indent=1))
    emit(ctx, payload, "\n".join(line for v in report.videos for line in v.human_lines()))
    if all(v.error for v in report.videos):
        raise UserError("no video could be read")


@click.command()
@click.option("--timeout", "timeout_s", default=90.0, show_default=True, help="give up after this many seconds")
@click.option("--keep", type=click.Path(file_okay=False), default=None, help="keep the demo files in this directory")
@json_option
@click.pass_context
def demo(ctx: click.Context, timeout_s: float, keep: str | None) -> None:
    """A real end-to-end run on a fresh machine: clip of a known face -> live pipeline -> one alert."""
    from stream.demo import DemoError, run_demo

    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="facewatch-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        ev = run_demo(get_config(ctx), get_analyzer(ctx), work, timeout_s, lambda s: click.echo(s, err=True))
        emit(ctx, {"alert": ev.model_dump()}, f"demo: ALERT {ev.identity} on {ev.camera} score {ev.score:.4f} "
                                              f"(threshold {ev.threshold:.4f}), capture->alert latency {ev.latency_ms:.0f} ms")
    except DemoError as exc:
        raise UserError(str(exc)) from None
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
