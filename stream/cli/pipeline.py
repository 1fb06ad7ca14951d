"""``run`` (live cameras), ``events``, ``scan`` (recorded video) and ``demo``: parse, call, print."""
from __future__ import annotations

import datetime as dt
import json
import logging
import shlex
import shutil
import tempfile
import time
from pathlib import Path

import click

from engines.model_store import ModelStore
from stream.cli.common import (EXIT_FAILURE, Group, UserError, emit, gallery_dir, gallery_option, get_analyzer,
                               get_config, json_option, note, show_progress, wants_json)
from stream.records import Event, ScanReport
from stream.store.events import EventStore, EventStoreError


allow_empty_option = click.option("--allow-empty-gallery", is_flag=True,
                                  help="start even when the gallery has no one enrolled (alerts on unknown faces only)")


def refuse_on_problems(problems: list[str]) -> None:
    """Nothing starts when a preflight check found a problem: one line per problem, exit 2."""
    if problems:
        raise UserError(f"{len(problems)} problem(s), nothing started: " + "; ".join(problems), code="preflight",
                        details=problems)


@click.command()
@allow_empty_option
@json_option
@click.pass_context
def run(ctx: click.Context, allow_empty_gallery: bool) -> None:
    """Live monitoring of the configured cameras until stopped (Ctrl-C / SIGTERM).

    Everything is checked before a stage starts (gallery, cameras' sources, every path written, the metrics
    port). Exits 1 when a stage keeps failing (supervisor.max_restarts within restart_window_s).
    """
    from stream.pipeline.supervisor import Supervisor, run_until
    from stream.preflight import run_problems

    cfg = get_config(ctx)
    refuse_on_problems(run_problems(cfg, allow_empty_gallery=allow_empty_gallery))
    cameras = [c for c in cfg.cameras if c.enabled]
    ModelStore(cfg.home).prepare(cfg.recognition.profile, cfg.detector.model, fetch=False)  # convert once here, not in every stage
    def state_line(state: str, why: str) -> None:
        click.echo(json.dumps({"type": "pipeline", "state": state, "why": why, "ts": time.time()}))

    sup = Supervisor(cfg, live=True, log_level=min(logging.getLogger().level, logging.INFO),
                     options={"console_json": wants_json(ctx)}, on_state=state_line if wants_json(ctx) else None)
    metrics = f"http://{cfg.metrics.host}:{cfg.metrics.port}/metrics" if cfg.metrics.enabled else None
    if wants_json(ctx):
        click.echo(json.dumps({"type": "status", "state": "monitoring", "cameras": [c.name for c in cameras],
                               "metrics": metrics}))
    else:
        note(f"facewatch: monitoring {len(cameras)} camera(s)" + (f"; metrics on {metrics}" if metrics else "")
             + "; Ctrl-C to stop")
    server = None
    if cfg.api.enabled:  # the web UI and API beside the pipeline, in this process (stages are their own)
        from stream.api.server import serve_in_thread

        server, thread = serve_in_thread(cfg)
    try:
        run_until(sup, until=lambda: False)
    finally:
        if server is not None:
            server.should_exit = True
            thread.join(timeout=5)
    if sup.failed:
        raise UserError(sup.failed, code="pipeline_failed", exit_code=EXIT_FAILURE)


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


def _event_store(ctx: click.Context) -> EventStore:
    """The configured event store; a missing or unusable file is one line, exit 2 (never "no events")."""
    cfg = get_config(ctx)
    path = cfg.resolve(cfg.alerts.store)
    if not path.is_file():
        raise UserError(f"no event store at {path} (alerts.store)", code="event_store")
    try:
        return EventStore(path)
    except EventStoreError as exc:
        raise UserError(str(exc), code="event_store") from None


def _delivery_text(e: Event) -> str:
    states = e.deliveries or {}
    return "deliveries: " + (" ".join(f"{sink}={state}" for sink, state in states.items()) or "none (console only)")


def _relabel_text(e: Event) -> str:
    return (f"  relabelled as {e.relabel_name} (score {e.relabel_score:.4f}; originally {e.kind})"
            if e.relabel_name else "")


@click.group(cls=Group, invoke_without_command=True)
@click.option("--since", default=None, help="only events at or after this time: epoch seconds or ISO date/time")
@json_option
@click.pass_context
def events(ctx: click.Context, since: str | None) -> None:
    """List stored alert events with their delivery state per sink; `events redeliver` sends again."""
    if ctx.invoked_subcommand is not None:
        if since is not None:
            raise UserError(f"--since applies to listing events, not to 'events {ctx.invoked_subcommand}'")
        return
    t = _parse_since(since)
    store = _event_store(ctx)
    try:
        evs = store.events(since=t)
    except EventStoreError as exc:
        raise UserError(str(exc), code="event_store") from None
    finally:
        store.close()
    emit(ctx, {"events": [e.model_dump() for e in evs]},
         "\n".join(f"{e.console_line()}  {_delivery_text(e)}{_relabel_text(e)}" for e in evs) if evs else "(no events)")


@events.command("redeliver")
@click.option("--id", "ids", type=int, multiple=True,
              help="this event's undelivered (pending or failed) deliveries; repeatable")
@click.option("--failed", is_flag=True, help="the deliveries that were given up on (with --id: of those events only)")
@json_option
@click.pass_context
def redeliver(ctx: click.Context, ids: tuple[int, ...], failed: bool) -> None:
    """Put deliveries back to pending, due now; a running `facewatch run` sends them (else the next start)."""
    if not ids and not failed:
        raise UserError("events redeliver: name the events with --id N, or choose --failed")
    store = _event_store(ctx)
    try:
        n = store.redeliver(ids, failed_only=failed)
    except EventStoreError as exc:  # unknown ids included: nothing was changed
        raise UserError(str(exc), code="event_store") from None
    finally:
        store.close()
    emit(ctx, {"reset": n}, f"{n} deliver{'y' if n == 1 else 'ies'} reset to pending; "
                            "a running 'facewatch run' sends them now, else the next start does")


def _relabel_world(ctx: click.Context, gallery: str | None):
    """(event store, read-only gallery) for the relabel commands; a missing store or gallery is one line, exit 2."""
    from stream.store.gallery import Gallery

    cfg = get_config(ctx)
    store = _event_store(ctx)
    try:
        gal = Gallery(gallery_dir(ctx, gallery), readonly=True, **cfg.gallery_args())
    except BaseException:
        store.close()
        raise
    return store, gal


@events.command("relabel-candidates")
@click.argument("name")
@gallery_option
@json_option
@click.pass_context
def relabel_candidates(ctx: click.Context, name: str, gallery: str | None) -> None:
    """Past unknown-face events that the gallery now identifies as NAME (at the per-photo threshold), best first.

    `facewatch events relabel NAME --event ID` (or --all-candidates) relabels them, keeping the original decision."""
    from stream.store.relabel import candidates
    from stream.store.gallery import normalize_name

    name = normalize_name(name)
    thr = get_config(ctx).threshold
    store, gal = _relabel_world(ctx, gallery)
    try:
        found = candidates(store, gal, name, thr)
        by_id = store.by_ids(c.event_id for c in found)
    except EventStoreError as exc:
        raise UserError(str(exc), code="event_store") from None
    finally:
        store.close()
        gal.close()
    rows = [{"id": c.event_id, "ts": by_id[c.event_id].ts_capture, "camera": by_id[c.event_id].camera,
             "score": c.score, "original_score": by_id[c.event_id].score, "source": by_id[c.event_id].source,
             "video_file": by_id[c.event_id].video_file, "video_time": by_id[c.event_id].video_time}
            for c in found if c.event_id in by_id]
    when = lambda t: dt.datetime.fromtimestamp(t).isoformat(sep=" ", timespec="seconds")  # noqa: E731
    lines = [f"{r['id']}\t{when(r['ts'])}\t{r['camera']}\tscore {r['score']:.4f}" for r in rows]
    lines.append(f"{len(rows)} past unknown event(s) match {name} (threshold {thr:.4f})"
                 + (f"; relabel with: facewatch events relabel {shlex.quote(name)} --all-candidates" if rows else ""))
    emit(ctx, {"name": name, "threshold": thr, "candidates": rows}, "\n".join(lines))


@events.command("relabel")
@click.argument("name")
@click.option("--event", "ids", type=int, multiple=True, help="this event (a candidate); repeatable")
@click.option("--all-candidates", is_flag=True, help="every event `events relabel-candidates NAME` lists")
@gallery_option
@json_option
@click.pass_context
def relabel(ctx: click.Context, name: str, ids: tuple[int, ...], all_candidates: bool, gallery: str | None) -> None:
    """Relabel past unknown-face events as NAME, keeping their original decision (kind, identity, score) beside it.

    Only candidates are relabelled (see relabel-candidates); all of them or none. Relabelling again is a no-op."""
    from stream.store.relabel import relabel as apply
    from stream.store.events import RelabelError
    from stream.store.gallery import normalize_name

    if bool(ids) == all_candidates:
        raise UserError("events relabel: name the events with --event ID, or choose --all-candidates")
    name = normalize_name(name)
    store, gal = _relabel_world(ctx, gallery)
    try:
        out = apply(store, gal, name, get_config(ctx).threshold, None if all_candidates else list(ids), by="cli")
    except RelabelError as exc:
        raise UserError(str(exc), code="relabel") from None
    except EventStoreError as exc:  # unknown ids included: nothing was changed
        raise UserError(str(exc), code="event_store") from None
    finally:
        store.close()
        gal.close()
    done, already = out["relabelled"], out["already"]
    text = (f"relabelled {len(done)} event(s) as {name}" + (f": {', '.join(map(str, done))}" if done else "")
            + (f"; {len(already)} already were: {', '.join(map(str, already))}" if already else "")
            + ("; the original decisions are kept" if done else ""))
    emit(ctx, {"name": name, "relabelled": done, "already": already,
               "events": [e.model_dump() for e in out["events"]]}, text)


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
@click.option("--store", is_flag=True, help="also store the events (video time, file, snapshots) in the event store "
                                            "(alerts.store), beside live events in the web UI and API")
@allow_empty_option
@json_option
@click.pass_context
def scan(ctx: click.Context, videos: tuple[str, ...], gallery: str | None, every: int, json_out: str | None,
         annotate: str | None, store: bool, allow_empty_gallery: bool) -> None:
    """Scan recorded video: every (Nth) frame, events in video time, per-identity appearances.

    Each file is reported complete, partial (decoding stopped early or frames failed to decode) or failed (not
    opened, not a regular file, no frame decoded), with a reason. Exits 0 only when every file is complete, 3 when
    the report was produced but some file is partial or failed.
    """
    from stream.scan.run import ScanError, scan_videos

    from stream.preflight import gallery_only_problems, rule_problems, store_problems, writable_dir_problems

    cfg = get_config(ctx)
    gdir = Path(gallery) if gallery else gallery_dir(ctx, None)
    problems = rule_problems(cfg) + gallery_only_problems(cfg, gdir, allow_empty_gallery=allow_empty_gallery)
    for option, path in (("--json-out", json_out), ("--annotate", annotate)):
        if path and Path(path).is_dir():  # found now, not after minutes of scanning
            problems.append(f"{option} {path}: is a directory")
        elif path:
            problems += writable_dir_problems(Path(path).resolve().parent, option)
    if store:
        problems += store_problems(cfg)
    refuse_on_problems(problems)
    ModelStore(cfg.home).prepare(cfg.recognition.profile, cfg.detector.model, fetch=False)
    try:
        report = scan_videos(cfg, list(videos), every, str(gdir), bool(annotate), progress=show_progress(ctx), store=store)
    except ScanError as exc:
        raise UserError(str(exc)) from None
    if annotate:
        _annotate(report, Path(annotate))
    internal = {"videos": {"__all__": {"observations"}}}  # for --annotate only
    payload = report.model_dump(mode="json", exclude=internal)
    if json_out:  # the same report as --json prints
        Path(json_out).write_text(report.model_dump_json(indent=1, exclude=internal))
    emit(ctx, payload, "\n".join(line for v in report.videos for line in v.human_lines()))
    short = [v for v in report.videos if v.status != "complete"]
    if short:
        note(f"facewatch: partial result: {len(short)} of {len(report.videos)} video(s) not read completely "
             f"({', '.join(f'{v.file}: {v.status}' for v in short)})")
        ctx.exit(3)  # a partial result: the report above covers only what could be read


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
        ev = run_demo(get_config(ctx), get_analyzer(ctx), work, timeout_s, note, keep=bool(keep))
        kept = f"; snapshots in {Path(ev.frame_path).parent}" if keep and ev.frame_path else \
            " (the demo's files are removed; --keep DIR keeps them, snapshots included)"
        emit(ctx, {"alert": ev.model_dump(), "kept": bool(keep)},
             f"demo: ALERT {ev.identity} on {ev.camera} score {ev.score:.4f} (threshold {ev.threshold:.4f}), "
             f"capture->alert latency {ev.latency_ms:.0f} ms" + kept)
    except DemoError as exc:
        raise UserError(str(exc)) from None
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
