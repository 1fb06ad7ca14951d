"""``eval video``: the real pipeline over labelled clips, per recognition profile and decision rule, in one table.

Registered on the ``eval`` group by importing this module (``stream/cli/__init__.py``).
"""
from __future__ import annotations

import click

from stream.cli.common import EXIT_FAILURE, EXIT_PARTIAL, UserError, emit, get_config, json_option, note, show_progress
from stream.cli.evaluation import eval_group


def _choices(value: str | None, allowed: tuple[str, ...], option: str) -> list[str] | None:
    """``a,b`` -> [a, b] (in order, once each); anything not in ``allowed`` is a usage error naming the option."""
    if value is None:
        return None
    items = list(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise UserError(f"{option} {value!r}: choose from {', '.join(allowed)} (comma-separated)", code="usage")
    return items


@eval_group.command("video")
@click.option("--labels", "labels", multiple=True, type=click.Path(), help="a label file (clip + who appears when); repeatable")
@click.option("--dir", "directory", type=click.Path(), default=None,
              help="a folder of clips and their label files (every *.json in it is one)")
@click.option("--profile", default=None, help="recognition profiles to run, comma-separated: fast,accurate,arcface "
                                              "[default: recognition.profile]")
@click.option("--rule", default=None, help="decision rules to run, comma-separated: track,votes "
                                           "[default: recognition.rule]")
@click.option("--timeout", "timeout_s", type=click.FloatRange(1), default=None,
              help="give up on one pipeline run after this many seconds")
@json_option
@click.pass_context
def eval_video(ctx: click.Context, labels: tuple[str, ...], directory: str | None, profile: str | None,
               rule: str | None, timeout_s: float | None) -> None:
    """Labelled clips through the real pipeline: per pass of an enrolled person named right, wrong name or missed,
    time to first correct alert; stranger false alarms; alerts on no labelled face. One row per profile and rule.

    Label files: see stream/eval/video_clips.py (tools/make_eval_clips.py writes clips and labels from labelled
    photos). Exits 3 when some clip was not read completely (the table covers only what was read)."""
    from stream.scan.evaluate import PROFILES, RULES, evaluate_video, label_files, load_clips
    from stream.scan.run import ScanError

    profiles = _choices(profile, PROFILES, "--profile")
    rules = _choices(rule, RULES, "--rule")
    if not labels and directory is None:
        raise UserError("give the clips' label files: --labels FILE (repeatable) or --dir DIR", code="usage")
    clips = load_clips(label_files(list(labels), directory))  # every file checked before a model loads
    cfg = get_config(ctx)
    profiles = profiles or [cfg.recognition.profile]
    rules = rules or [cfg.recognition.rule]
    try:
        rep = evaluate_video(cfg, clips, profiles, rules, progress=show_progress(ctx), note=note, timeout_s=timeout_s)
    except ScanError as exc:
        raise UserError(f"eval video: {exc}", code="pipeline_failed", exit_code=EXIT_FAILURE) from None
    lines = [f"{rep.clips} clip(s), {len(rep.labels)} label file(s); cooldown off: every pass judged on its own",
             *rep.table_lines()]
    short = [v for r in rep.runs for v in r.videos if v["status"] != "complete"]
    skipped = [s for r in rep.runs for e in r.enrolment for s in e["skipped"]]
    if skipped:
        lines.append(f"enrolment photos without a face (skipped): {len({(s['identity'], s['photo']) for s in skipped})}")
    emit(ctx, rep.to_dict(), "\n".join(lines))
    if short:
        note(f"facewatch: partial result: {len(short)} clip scan(s) not read completely "
             "(" + "; ".join(sorted({f"{v['file']}: {v['status']}" for v in short})) + ")")
        ctx.exit(EXIT_PARTIAL)
