"""``facewatch`` command line: photos (verify, identify, gallery), models, and the pipeline commands.

Every command takes ``--json``; bad input exits 2 with one line on stderr saying what is wrong.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from stream.config import Config, ConfigError, load_config

log = logging.getLogger("facewatch")

EXIT_BAD_INPUT = 2


class UserError(click.ClickException):
    """Bad input: one line, exit 2."""

    exit_code = EXIT_BAD_INPUT

    def show(self, file: Any = None) -> None:
        click.echo(f"facewatch: error: {self.message}", err=True)


def _known_errors() -> tuple[type[BaseException], ...]:
    from engines.backend import BackendUnavailable
    from engines.models import ModelError
    from stream.gallery import GalleryError
    from stream.images import ImageError

    return (ConfigError, ImageError, GalleryError, ModelError, BackendUnavailable, NoFaceError)


class NoFaceError(ValueError):
    """A photo that must show a face shows none (or several where one is required)."""


class _Group(click.Group):
    """Turns the project's own input errors into ``UserError`` (exit 2, one line)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _known_errors() as exc:
            raise UserError(str(exc)) from None


def emit(ctx: click.Context, payload: dict, human: str) -> None:
    if ctx.obj["json"]:
        click.echo(json.dumps(payload, default=_jsonable))
    else:
        click.echo(human)


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def json_option(f):
    """``--json`` accepted on every command (and on the group)."""

    def cb(ctx: click.Context, _p: click.Parameter, value: bool) -> None:
        if value:
            ctx.ensure_object(dict)["json"] = True

    def cfg_cb(ctx: click.Context, _p: click.Parameter, value: str | None) -> None:
        if value:
            ctx.find_root().ensure_object(dict)["config_path"] = value

    f = click.option("--json", "as_json", is_flag=True, expose_value=False, callback=cb, help="machine-readable output")(f)
    if getattr(f, "__name__", "") == "main":
        return f
    return click.option("-c", "--config", "sub_config", type=click.Path(dir_okay=False), default=None, expose_value=False,
                        callback=cfg_cb, is_eager=True, help="YAML config file")(f)


@click.group(cls=_Group)
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), default=None, help="YAML config file")
@click.option("-v", "--verbose", count=True, help="more log output (-v info, -vv debug)")
@json_option
@click.pass_context
def main(ctx: click.Context, config_path: str | None, verbose: int) -> None:
    """facewatch: real-time face recognition for video surveillance."""
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    obj = ctx.ensure_object(dict)
    obj.setdefault("json", False)
    obj.setdefault("config_path", config_path)


def get_config(ctx: click.Context) -> Config:
    obj = ctx.find_root().obj
    if "config" not in obj:
        try:
            obj["config"] = load_config(obj["config_path"])
        except ConfigError as exc:
            raise UserError(str(exc)) from None
    return obj["config"]


def get_analyzer(ctx: click.Context):
    from engines.analyzer import FaceAnalyzer

    cfg = get_config(ctx)
    obj = ctx.find_root().obj
    if "analyzer" not in obj:
        obj["analyzer"] = FaceAnalyzer.create(
            engine=cfg.engines.engine,
            threads=cfg.engines.threads,
            det_threshold=cfg.detector.score_threshold,
            max_side=cfg.detector.max_side,
            home=cfg.home,
            engine_options={"precision": cfg.engines.precision, "detector_input": tuple(cfg.engines.detector_input)},
        )
    return obj["analyzer"]


def gallery_dir(ctx: click.Context, given: str | None) -> Path:
    cfg = get_config(ctx)
    return Path(given) if given else cfg.resolve(cfg.matching.gallery)


gallery_option = click.option("--gallery", "gallery", type=click.Path(file_okay=False), default=None, help="gallery directory")


def _one_face(analyzer, path: str, largest: bool = True):
    """The single face of a photo (the largest one when ``largest``); NoFaceError otherwise."""
    from stream.images import load_image

    faces = analyzer.analyze(load_image(path))
    if not faces:
        raise NoFaceError(f"{path}: no face found")
    if len(faces) > 1 and not largest:
        raise NoFaceError(f"{path}: {len(faces)} faces found, expected one (use --largest to take the largest)")
    return max(faces, key=lambda f: float(np.prod(f.box[2:] - f.box[:2])))


# --------------------------------------------------------------------------- photos
@main.command()
@click.argument("img1", type=click.Path())
@click.argument("img2", type=click.Path())
@json_option
@click.pass_context
def verify(ctx: click.Context, img1: str, img2: str) -> None:
    """1:1 -- are the (largest) faces in IMG1 and IMG2 the same person?"""
    analyzer = get_analyzer(ctx)
    cfg = get_config(ctx)
    a, b = _one_face(analyzer, img1), _one_face(analyzer, img2)
    score = float(np.dot(a.embedding, b.embedding))
    thr = cfg.matching.threshold
    same = score >= thr
    emit(ctx, {"score": score, "threshold": thr, "same": same},
         f"{'SAME' if same else 'DIFFERENT'} person: score {score:.4f} (threshold {thr:.4f})")


@main.command()
@click.argument("img", type=click.Path())
@gallery_option
@json_option
@click.pass_context
def identify(ctx: click.Context, img: str, gallery: str | None) -> None:
    """1:N -- who, from the gallery, is in IMG? Faces below the threshold are "unknown"."""
    from stream.gallery import Gallery
    from stream.images import load_image

    cfg = get_config(ctx)
    analyzer = get_analyzer(ctx)
    image = load_image(img)
    gal = Gallery(gallery_dir(ctx, gallery), readonly=True)
    faces = analyzer.analyze(image)
    cands = gal.search(np.stack([f.embedding for f in faces]) if faces else np.zeros((0, 128), np.float32), k=cfg.matching.top_k)
    thr = cfg.matching.threshold
    out = []
    for f, c in zip(faces, cands):
        ident = c.identity if c.identity is not None and c.score >= thr else None
        out.append({"box": [round(float(v), 1) for v in f.box], "det_score": round(f.det_score, 4),
                    "identity": ident, "score": round(c.score, 4)})
    if not faces:
        click.echo(f"facewatch: {img}: no face found", err=True)
    lines = [f"{o['identity'] or 'unknown'}\tscore {o['score']:.4f}\tbox {o['box']}" for o in out]
    emit(ctx, {"faces": out, "threshold": thr}, "\n".join(lines) if lines else "no face found")


# --------------------------------------------------------------------------- gallery
@main.group(cls=_Group)
def gallery() -> None:
    """Enroll, list and remove watchlist persons."""


@gallery.command("enroll")
@click.argument("name")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--largest", is_flag=True, help="in photos with several faces, take the largest")
@gallery_option
@json_option
@click.pass_context
def gallery_enroll(ctx: click.Context, name: str, images: tuple[str, ...], largest: bool, gallery: str | None) -> None:
    """Enroll NAME from one or more photos, each showing one face."""
    from stream.gallery import Gallery, GalleryError
    from stream.images import ImageError

    analyzer = get_analyzer(ctx)
    embeddings, sources, skipped = [], [], []
    for path in images:
        try:
            face = _one_face(analyzer, path, largest=largest)
        except (ImageError, NoFaceError) as exc:
            skipped.append({"file": path, "reason": str(exc)})
            click.echo(f"facewatch: skipped {exc}", err=True)
            continue
        embeddings.append(face.embedding)
        sources.append(Path(path).name)
    if not embeddings:
        raise GalleryError(f"nothing enrolled for {name!r}: none of the {len(images)} photo(s) gave exactly one usable face")
    gal = Gallery(gallery_dir(ctx, gallery))
    added = gal.enroll(name, np.stack(embeddings), sources)
    total = dict(gal.persons()).get(name.strip(), added)
    emit(ctx, {"name": name.strip(), "enrolled": added, "samples": total, "skipped": skipped},
         f"enrolled {name.strip()}: {added} photo(s) added, {total} sample(s) in all, {len(skipped)} skipped")


@gallery.command("list")
@gallery_option
@json_option
@click.pass_context
def gallery_list(ctx: click.Context, gallery: str | None) -> None:
    """Persons in the gallery with their number of samples."""
    from stream.gallery import DB_FILE, Gallery

    d = gallery_dir(ctx, gallery)
    persons = Gallery(d, readonly=True).persons() if (d / DB_FILE).exists() else []
    emit(ctx, {"persons": [{"name": n, "samples": c} for n, c in persons]},
         "\n".join(f"{n}\t{c}" for n, c in persons) if persons else "(empty gallery)")


@gallery.command("remove")
@click.argument("name")
@gallery_option
@json_option
@click.pass_context
def gallery_remove(ctx: click.Context, name: str, gallery: str | None) -> None:
    """Remove NAME and all their samples."""
    from stream.gallery import DB_FILE, Gallery, GalleryError

    d = gallery_dir(ctx, gallery)
    if not (d / DB_FILE).exists():
        raise GalleryError(f"{d}: no gallery here")
    n = Gallery(d).remove(name)
    emit(ctx, {"name": name, "removed_samples": n}, f"removed {name} ({n} samples)")


# --------------------------------------------------------------------------- models
@main.group(cls=_Group)
def models() -> None:
    """Model files: convert, verify, build engines."""


@models.command("prepare")
@json_option
@click.pass_context
def models_prepare(ctx: click.Context) -> None:
    """Convert/extract both models into the cache and report files, sizes and checksums."""
    from engines.models import ModelStore

    cfg = get_config(ctx)
    files = ModelStore(cfg.home).prepare()
    emit(ctx, {"models": [{"name": f.name, "path": f.path, "bytes": f.size, "sha256": f.sha256, "source": f.source} for f in files]},
         "\n".join(f"{f.name}\t{f.size} bytes\tsha256 {f.sha256}\t{f.path}\n  from {f.source}" for f in files))


@models.command("build-engines")
@click.option("--force", is_flag=True, help="rebuild even when a cached engine fits")
@json_option
@click.pass_context
def models_build_engines(ctx: click.Context, force: bool) -> None:
    """Build and cache TensorRT engines for both models, with the profiles the pipeline stages use."""
    from engines.backend import resolve_backend
    from engines.models import ModelStore
    from stream.loaders import pipeline_detector, pipeline_embedder

    cfg = get_config(ctx)
    resolve_backend("tensorrt")  # no TensorRT or no GPU: one clear line, exit 2
    ModelStore(cfg.home).prepare()
    rows = []
    for kind, load in (("detector", pipeline_detector), ("embedder", pipeline_embedder)):
        model = load(cfg, engine="tensorrt", rebuild=force, shared_cpu=False)
        b = model.backend
        rows.append({"model": kind, "engine": str(b.engine_path), "bytes": b.engine_bytes, "precision": b.precision,
                     "build_seconds": b.build_seconds, "from_cache": b.build_seconds is None,
                     "profile_min_opt_max": [list(s) for s in b.profile.shapes()]})
    def line(r: dict) -> str:
        how = "from cache" if r["from_cache"] else f"built in {r['build_seconds']:.1f} s"
        b = [s[0] for s in r["profile_min_opt_max"]]
        return f"{r['model']}: {r['engine']} ({r['bytes'] / 1e6:.1f} MB, {r['precision']}, {how}; batch min/opt/max {b[0]}/{b[1]}/{b[2]})"

    emit(ctx, {"engines": rows}, "\n".join(line(r) for r in rows))


# --------------------------------------------------------------------------- evaluation
def _rate_lines(rates, kind: str, false: str) -> list[str]:
    out = []
    for r in rates:
        if r.rate is None:
            out.append(f"  {kind} @ {false} {r.target:g}: n/a ({r.note})")
        else:
            out.append(f"  {kind} @ {false} {r.target:g}: {r.rate:.4f}  threshold {r.threshold:.4f}  (measured {false} {r.achieved:.4%})")
    return out


@main.group("eval", cls=_Group)
def eval_group() -> None:
    """Measure accuracy on your own labelled photos."""


@eval_group.command("verify")
@click.option("--pairs", "pairs_file", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--root", required=True, type=click.Path(exists=True, file_okay=False), help="IDS_DIR/<name>/<i>.jpg")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="ROC curve PNG")
@json_option
@click.pass_context
def eval_verify(ctx: click.Context, pairs_file: str, root: str, plot: str | None) -> None:
    """LFW protocol: 10-fold accuracy, ROC AUC, TAR at FAR 1e-2/1e-3/1e-4 with thresholds."""
    from stream.evaluate import evaluate_verify

    rep = evaluate_verify(get_analyzer(ctx), Path(pairs_file), Path(root), plot=Path(plot) if plot else None,
                          progress=not ctx.obj["json"])
    lines = [f"pairs: {rep.genuine} same + {rep.impostor} different; images {rep.images}, without a face {rep.failed_images} ({rep.failure_policy})",
             f"10-fold accuracy: {rep.accuracy_mean:.4f} +- {rep.accuracy_std:.4f}", f"ROC AUC: {rep.auc:.4f}"]
    lines += _rate_lines(rep.tar_at_far, "TAR", "FAR")
    emit(ctx, rep.to_dict(), "\n".join(lines))


@eval_group.command("identify")
@click.option("--root", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--enroll", "enroll_k", default=3, show_default=True, type=click.IntRange(1, 1000), help="photos enrolled per identity")
@click.option("--only", default=None, help="use only identities whose folder name starts with this (one data family)")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="FPIR-vs-N PNG")
@json_option
@click.pass_context
def eval_identify(ctx: click.Context, root: str, enroll_k: int, only: str | None, plot: str | None) -> None:
    """Open-set 1:N: rank-1, FNIR at FPIR 1% / 0.1%, and FPIR growth with gallery size N."""
    from stream.evaluate import evaluate_identify

    cfg = get_config(ctx)
    rep = evaluate_identify(get_analyzer(ctx), Path(root), enroll=enroll_k, threshold=cfg.matching.threshold, only=only,
                            plot=Path(plot) if plot else None, progress=not ctx.obj["json"])
    lines = [f"identities {rep.identities}: enrolled {rep.enrolled_identities} x {rep.enroll_per_identity} photos; "
             f"mated probes {rep.mated_probes}, non-mated {rep.nonmated_probes}",
             f"rank-1 identification rate: {rep.rank1:.4f}"]
    lines += _rate_lines(rep.fnir_at_fpir, "FNIR", "FPIR")
    lines.append(f"FPIR at fixed threshold {rep.fixed_threshold:.4f} vs gallery size:")
    lines.append("      N    FPIR")
    lines += [f"  {r['N']:5d}  {r['fpir']:.4f}" for r in rep.fpir_vs_n]
    emit(ctx, rep.to_dict(), "\n".join(lines))


@eval_group.command("detect")
@click.option("--images", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--truth", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="precision/recall PNG")
@json_option
@click.pass_context
def eval_detect(ctx: click.Context, images: str, truth: str, plot: str | None) -> None:
    """Detection rate, miss rate, false-detection rate (IoU >= 0.5), PR curve, mean latency."""
    from stream.evaluate import evaluate_detect

    rep = evaluate_detect(get_analyzer(ctx).detector, Path(images), Path(truth), plot=Path(plot) if plot else None)
    human = (f"{rep['images']} images, {rep['faces']} faces, threshold {rep['threshold']}\n"
             f"detection rate {rep['detection_rate']:.4f}  miss rate {rep['miss_rate']:.4f}  "
             f"false-detection rate {rep['false_detection_rate']:.4f} ({rep['false_per_image']:.2f} per image)\n"
             f"images with every face found: {rep['images_all_found']:.2%}; mean latency {rep['mean_latency_ms']:.1f} ms")
    emit(ctx, {k: v for k, v in rep.items()}, human)


@main.command()
@click.option("--pairs", "pairs_file", type=click.Path(exists=True, dir_okay=False), required=True,
              help="LFW pairs file; the impostor pairs set the threshold")
@click.option("--root", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--target-far", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.001, show_default=True,
              help="target FAR (1:1), or target FPIR with --gallery-size")
@click.option("--gallery-size", type=click.IntRange(1), default=None, help="1:N: gallery size N the FPIR is meant for")
@click.option("--write", "write_to", type=click.Path(dir_okay=False), default=None, help="config file to write the threshold into")
@json_option
@click.pass_context
def calibrate(ctx: click.Context, pairs_file: str, root: str, target_far: float, gallery_size: int | None, write_to: str | None) -> None:
    """Pick the threshold for a target false-accept rate (at gallery size N) and write it into a config."""
    from stream.evaluate import calibrate_from_pairs, write_threshold

    try:
        res = calibrate_from_pairs(get_analyzer(ctx), Path(pairs_file), Path(root), target_far, gallery_size,
                                   progress=not ctx.obj["json"])
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if write_to:
        write_threshold(Path(write_to), res)
        res["written_to"] = write_to
    emit(ctx, res, f"threshold {res['threshold']}: {res['source']}" + (f"\nwritten to {write_to}" if write_to else ""))


# --------------------------------------------------------------------------- pipeline
def _run_supervisor(sup, until, timeout_s: float | None = None, on_tick=None) -> bool:
    """Run ``sup`` until ``until()`` is true, SIGINT/SIGTERM, or the timeout; always stops it cleanly."""
    import signal
    import time

    stop = {"flag": False}

    def handler(signum, _frame):
        stop["flag"] = True

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    t0 = time.monotonic()
    ok = False
    try:
        sup.start()
        while not stop["flag"]:
            sup.poll(0.25)
            if on_tick:
                on_tick(sup)
            if until():
                ok = True
                break
            if timeout_s is not None and time.monotonic() - t0 > timeout_s:
                break
    finally:
        sup.stop()
        for s, h in old.items():
            signal.signal(s, h)
    return ok


@main.command()
@json_option
@click.pass_context
def run(ctx: click.Context) -> None:
    """Live monitoring of the configured cameras until stopped (Ctrl-C / SIGTERM)."""
    from stream.supervisor import Supervisor

    cfg = get_config(ctx)
    if not [c for c in cfg.cameras if c.enabled]:
        raise UserError("no enabled camera in the config (cameras: [...])")
    from engines.models import ModelStore

    ModelStore(cfg.home).prepare()  # convert once here, not in every stage
    level = logging.getLogger().level
    sup = Supervisor(cfg, live=True, log_level=min(level, logging.INFO))
    click.echo(f"facewatch: monitoring {len([c for c in cfg.cameras if c.enabled])} camera(s); "
               f"metrics on http://{cfg.metrics.host}:{cfg.metrics.port}/metrics; Ctrl-C to stop", err=True)
    _run_supervisor(sup, until=lambda: False)


@main.command()
@click.option("--since", default=None, help="only events at or after this time: epoch seconds or ISO date/time")
@json_option
@click.pass_context
def events(ctx: click.Context, since: str | None) -> None:
    """List stored alert events."""
    import datetime as dt

    from stream.events import EventStore
    from stream.sinks import console_line

    cfg = get_config(ctx)
    t = 0.0
    if since:
        try:
            t = float(since)
        except ValueError:
            try:
                t = dt.datetime.fromisoformat(since).timestamp()
            except ValueError:
                raise UserError(f"--since {since!r}: use epoch seconds or an ISO date/time") from None
    path = cfg.resolve(cfg.alerts.store)
    evs = EventStore(path).events(since=t) if path.exists() else []
    emit(ctx, {"events": evs}, "\n".join(console_line(e) for e in evs) if evs else "(no events)")


def scan_videos(cfg: Config, videos: list[str], every: int, gallery: str | None, annotate: bool,
                progress: bool = True, timeout_s: float | None = None) -> dict:
    """Run recorded videos through the pipeline stages (backpressure, no drops) and return the report."""
    import tempfile

    import cv2
    from tqdm import tqdm

    from stream.supervisor import Supervisor

    names, files, total = set(), [], 0
    for v in videos:
        stem = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in Path(v).stem) or "video"
        name, k = stem, 1
        while name in names:
            k += 1
            name = f"{stem}-{k}"
        names.add(name)
        files.append((name, str(v)))
        cap = cv2.VideoCapture(str(v))
        total += max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)) // every
        cap.release()
    tmp = tempfile.mkdtemp(prefix="facewatch-scan-")
    report_path = Path(tmp) / "report.json"
    options = {"files": files, "every": every, "report_path": str(report_path), "observations": annotate}
    if gallery:
        options["gallery"] = gallery
    cfg = cfg.model_copy(deep=True)
    cfg.alerts.sinks.console = False
    sup = Supervisor(cfg, live=False, options=options, serve_metrics=False)
    bar = tqdm(total=total, unit="frame", desc="scan", disable=not progress)

    def tick(s) -> None:
        done = next((c.metrics.get("frames_out", 0) for c in s.children if c.spec.kind == "capture"), 0)
        bar.update(max(0, int(done) - bar.n))

    ok = _run_supervisor(sup, until=report_path.exists, timeout_s=timeout_s, on_tick=tick)
    bar.close()
    if not ok:
        raise UserError("scan did not finish (interrupted or timed out)")
    report = json.loads(report_path.read_text())
    report_path.unlink()
    os.rmdir(tmp)
    return report


@main.command()
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
    cfg = get_config(ctx)
    from engines.models import ModelStore

    ModelStore(cfg.home).prepare()
    report = scan_videos(cfg, list(videos), every, gallery or str(gallery_dir(ctx, None)), bool(annotate),
                         progress=not ctx.obj["json"])
    if annotate:
        from stream.annotate import annotate_video

        for v in report["videos"]:
            if v.get("observations"):
                annotate_video(v["file"], v["observations"], v["track_identity"], Path(annotate) if len(report["videos"]) == 1
                               else Path(annotate).with_name(f"{Path(annotate).stem}-{v['camera']}{Path(annotate).suffix}"))
            v.pop("observations", None)
    if json_out:
        Path(json_out).write_text(json.dumps(report, indent=1))
    lines = []
    for v in report["videos"]:
        lines.append(f"{v['file']}: {v['frames']} frames" + (f"  ERROR: {v['error']}" if v["error"] else ""))
        lines += [f"  t={e['video_time']:.2f}s frame {e['frame_index']}: {e['identity'] or 'UNKNOWN'} score {e['score']:.4f}" for e in v["events"]]
        lines += [f"  {n}: first {a['first_seen']:.2f}s last {a['last_seen']:.2f}s best {a['best_score']:.4f}" for n, a in v["appearances"].items()]
    emit(ctx, report, "\n".join(lines))
    if all(v["error"] for v in report["videos"]):
        raise UserError("no video could be read")


@main.command()
@click.option("--timeout", "timeout_s", default=90.0, show_default=True, help="give up after this many seconds")
@click.option("--keep", type=click.Path(file_okay=False), default=None, help="keep the demo files in this directory")
@json_option
@click.pass_context
def demo(ctx: click.Context, timeout_s: float, keep: str | None) -> None:
    """A real end-to-end run on a fresh machine: clip of a known face -> live pipeline -> one alert."""
    import shutil
    import tempfile

    from engines.models import ModelStore
    from stream.clips import Appearance, astronaut_head, render_clip
    from stream.events import EventStore
    from stream.gallery import Gallery
    from stream.supervisor import Supervisor

    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="facewatch-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        ModelStore().prepare()
        head = astronaut_head()
        clip = render_clip(work / "demo.mp4", [Appearance(head, 0.5, 5.5)], size=(1280, 720), duration_s=6.0)
        click.echo(f"demo: clip {clip} (1280x720, the astronaut's face crossing the frame)", err=True)
        analyzer = get_analyzer(ctx)
        faces = analyzer.analyze(head)
        if not faces:
            raise UserError("demo: the enrollment photo gave no face")
        Gallery(work / "gallery").enroll("astronaut (demo)", np.stack([faces[0].embedding]), ["skimage astronaut"])
        base = get_config(ctx).model_dump(mode="json")
        base.update(data_dir=str(work), cameras=[{"name": "demo-cam", "source": str(clip), "fps": 10, "replay": True}])
        base["matching"]["gallery"] = "gallery"
        base["metrics"]["enabled"] = False
        cfg = Config.model_validate(base)
        store_path = cfg.resolve(cfg.alerts.store)
        sup = Supervisor(cfg, live=True)
        click.echo("demo: live pipeline started (capture -> detect -> embed -> match -> alert); waiting for an alert", err=True)

        def alerted() -> bool:
            return store_path.exists() and bool(EventStore(store_path).events())

        if not _run_supervisor(sup, until=alerted, timeout_s=timeout_s):
            raise UserError(f"demo: no alert within {timeout_s:.0f} s")
        ev = EventStore(store_path).events()[0]
        emit(ctx, {"alert": ev}, f"demo: ALERT {ev['identity']} on {ev['camera']} score {ev['score']:.4f} "
                                 f"(threshold {ev['threshold']:.4f}), capture->alert latency {ev['latency_ms']:.0f} ms")
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
