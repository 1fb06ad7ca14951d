"""``gallery enroll | list | rename | remove | check | repair``: the watchlist."""
from __future__ import annotations

import hashlib
import shlex
from pathlib import Path

import click
import numpy as np

from stream.cli.common import (Group, NoFaceError, UserError, emit, gallery_dir, gallery_option, get_analyzer, get_config,
                               json_option, note, one_face, register_error)
from stream.media.files import regular_file_problem
from stream.media.images import ImageError
from stream.store.gallery import Gallery, GalleryError, GalleryHealth, check, normalize_name, repair, writer_preflight
from stream.scan.enroll import VideoEnrollError


register_error(VideoEnrollError, "video")


@click.group(cls=Group)
def gallery() -> None:
    """Enroll, list, rename, remove, check and repair watchlist persons."""


class _Repeat(ValueError):
    """A photo given twice in one enrollment: skipped like a photo without a face."""


def _same_photo(images: tuple[str, ...]) -> dict[int, str]:
    """For each photo that repeats an earlier one (the same file, or identical bytes): that earlier one, by
    position. A repeat would weigh one photo twice in the person's samples."""
    seen: dict[tuple[str, str], str] = {}
    dupes: dict[int, str] = {}
    for i, path in enumerate(images):
        p = Path(path)
        keys: list[tuple[str, str]] = []
        try:
            keys.append(("file", str(p.resolve())))
            if p.is_file():
                with open(p, "rb") as fh:
                    keys.append(("bytes", hashlib.file_digest(fh, "sha256").hexdigest()))
        except OSError:
            pass  # unreadable: load_image gives the verdict
        earlier = next((seen[k] for k in keys if k in seen), None)
        if earlier is not None:
            dupes[i] = earlier
        for k in keys:
            seen.setdefault(k, path)
    return dupes


@gallery.command("enroll")
@click.argument("name")
@click.argument("images", nargs=-1, type=click.Path())
@click.option("--video", type=click.Path(), default=None,
              help="enroll from this video instead of photos: its one person's best distinct faces")
@click.option("--max-samples", type=click.IntRange(1, 100), default=5, show_default=True,
              help="with --video: at most this many samples")
@click.option("--track", "track", type=click.IntRange(1), default=None,
              help="with --video showing several people: enroll the person of this track (the refusal lists them)")
@click.option("--largest", is_flag=True,
              help="in photos with several faces, take the largest; with --video, the person with the largest faces")
@gallery_option
@json_option
@click.pass_context
def gallery_enroll(ctx: click.Context, name: str, images: tuple[str, ...], video: str | None, max_samples: int,
                   track: int | None, largest: bool, gallery: str | None) -> None:
    """Enroll NAME from one or more photos, each showing one face, or from a video (--video FILE).

    A photo that gives no usable face, or repeats another of the same call, is skipped with a warning. From a video,
    frames are sampled a few times a second, faces quality-gated and tracked, and the best distinct looks of its
    one person kept (a video with several people is refused unless --track N or --largest says who).
    Afterwards, past unknown events whose face matches NAME are counted: `facewatch events relabel-candidates NAME`."""
    if video is not None:
        if images:
            raise UserError("give photos or --video, not both")
        return _enroll_video(ctx, name, video, max_samples, track, largest, gallery)
    if not images:
        raise click.UsageError("Missing argument 'IMAGES...': give one or more photos, or --video FILE", ctx=ctx)
    if track is not None or ctx.get_parameter_source("max_samples") != click.core.ParameterSource.DEFAULT:
        raise UserError("--track and --max-samples apply to --video only")
    name = normalize_name(name)
    d = gallery_dir(ctx, gallery)
    writer_preflight(d)  # a gallery we must not write is refused before the slow part
    analyzer = get_analyzer(ctx)
    embeddings, sources, crops, skipped, verdicts = [], [], [], [], []
    dupes = _same_photo(images)
    for i, path in enumerate(images):
        try:
            if i in dupes:
                raise _Repeat(f"{path}: same photo as {dupes[i]}")
            face = one_face(analyzer, path, largest=largest)
        except (ImageError, NoFaceError, _Repeat) as exc:
            skipped.append({"file": path, "reason": str(exc)})
            verdicts.append({"file": path, "verdict": "skipped", "reason": str(exc)})
            click.echo(f"facewatch: skipped {exc}", err=True)
            continue
        embeddings.append(face.embedding)
        crops.append(face.crop)
        sources.append(Path(path).name)
        verdicts.append({"file": path, "verdict": "enrolled"})
    if not embeddings:
        raise GalleryError(f"nothing enrolled for {name!r}: none of the {len(images)} photo(s) gave exactly one "
                           "usable face")
    added, total, matches = _enroll(ctx, d, name, embeddings, sources, crops)
    lines = [f"{v['verdict']}\t{v['file']}" + (f"\t{v['reason']}" if "reason" in v else "") for v in verdicts]
    lines.append(f"enrolled {name}: {added} photo(s) added, {total} sample(s) in all, {len(skipped)} skipped")
    lines += _hint(name, matches)
    emit(ctx, {"name": name, "enrolled": added, "samples": total, "skipped": skipped, "files": verdicts,
               "relabel_candidates": matches}, "\n".join(lines))


def _enroll(ctx: click.Context, d: Path, name: str, embeddings: list[np.ndarray], sources: list[str],
            crops: list) -> tuple[int, int, int | None]:
    """The one enrolment path of photos and videos: (samples added, samples in all, past unknown events that
    now match ``name``; None when there is no event store to look in)."""
    cfg = get_config(ctx)
    with Gallery(d, **cfg.gallery_args()) as gal:
        added = gal.enroll(name, np.stack(embeddings), sources, crops=crops)
        total = dict(gal.persons()).get(name, added)
        return added, total, _relabel_count(ctx, gal, name)


def _relabel_count(ctx: click.Context, gal: Gallery, name: str) -> int | None:
    """How many past unknown events match ``name`` now; None without a usable event store (never created here)."""
    from stream.store.relabel import candidates
    from stream.store.events import EventStore, EventStoreError

    cfg = get_config(ctx)
    path = cfg.resolve(cfg.alerts.store)
    if not path.is_file():
        return None
    try:
        store = EventStore(path)
    except EventStoreError as exc:
        note(f"facewatch: past events not searched: {exc}")
        return None
    try:
        return len(candidates(store, gal, name, cfg.threshold))
    except EventStoreError as exc:
        note(f"facewatch: past events not searched: {exc}")
        return None
    finally:
        store.close()


def _hint(name: str, matches: int | None) -> list[str]:
    if not matches:
        return []
    shown = shlex.quote(name)
    return [f"{matches} past unknown event{'s' if matches != 1 else ''} match{'es' if matches == 1 else ''} {name}: "
            f"facewatch events relabel-candidates {shown}"]


def _enroll_video(ctx: click.Context, name: str, video: str, max_samples: int, track: int | None, largest: bool,
                  gallery: str | None) -> None:
    from stream.scan.enroll import read_faces, select

    name = normalize_name(name)
    d = gallery_dir(ctx, gallery)
    writer_preflight(d)
    cfg = get_config(ctx)
    problem = regular_file_problem(video)  # before the models load; never opens a FIFO
    if problem:
        raise UserError(f"{video}: {problem}", code="video")
    faces = read_faces(get_analyzer(ctx), cfg, video)
    sel = select(faces, cfg.threshold, max_samples, track=track, largest=largest)
    base = Path(video).name
    added, total, matches = _enroll(ctx, d, name, [c.embedding for c in sel.kept],
                                    [f"video:{base}@{c.time:.2f}s" for c in sel.kept], [c.crop_jpeg for c in sel.kept])
    lines = [f"kept\tframe {c.frame}\tt={c.time:.2f}s\ttrack {c.track}\tquality {c.quality:.3f}\t"
             f"det_score {c.det_score:.3f}\tsize {c.size:.0f}\tsharpness {c.sharpness:.0f}" for c in sel.kept]
    rejected = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in sel.to_dict()["rejected"].items() if n)
    lines.append(f"rejected: {rejected or 'none'}")
    person_tracks = sel.to_dict()["person_tracks"]
    lines.append(f"enrolled {name}: {added} sample(s) from {video} (track{'s' if len(person_tracks) > 1 else ''} "
                 f"{', '.join(map(str, person_tracks))}), {total} sample(s) in all")
    lines += _hint(name, matches)
    emit(ctx, {"name": name, "enrolled": added, "samples": total, **sel.to_dict(), "relabel_candidates": matches},
         "\n".join(lines))


@gallery.command("reembed")
@click.option("--drop-uncropped", is_flag=True,
              help="delete samples that have no kept face crop (enrolled before crops were kept) instead of refusing")
@gallery_option
@json_option
@click.pass_context
def gallery_reembed(ctx: click.Context, drop_uncropped: bool, gallery: str | None) -> None:
    """Move the gallery to this configuration's recognition profile: every sample's kept face crop is embedded
    again with the profile's models, in one transaction (all vectors change, or none)."""
    cfg = get_config(ctx)
    d = gallery_dir(ctx, gallery)
    writer_preflight(d)
    with Gallery(d, create=False) as gal:
        before = gal.embedder
        receipt = gal.reembed(get_analyzer(ctx).embedder.embed_crops, cfg.embedder_id, cfg.embedding_dim,
                              drop_uncropped=drop_uncropped)
    emit(ctx, {"gallery": str(d), "from": before, "to": cfg.embedder_id, **receipt},
         f"reembedded {d}: {before} -> {cfg.embedder_id}: {receipt['samples']} sample(s), {receipt['negatives']} "
         f"negative sample(s); dropped {receipt['dropped_samples']} sample(s) and {receipt['dropped_negatives']} "
         f"negative sample(s) without a kept crop; {receipt['persons_removed']} person(s) left without samples removed")


@gallery.command("list")
@gallery_option
@json_option
@click.pass_context
def gallery_list(ctx: click.Context, gallery: str | None) -> None:
    """Persons in the gallery with their number of samples."""
    with Gallery(gallery_dir(ctx, gallery), readonly=True) as gal:
        persons = gal.persons()
    emit(ctx, {"persons": [{"name": n, "samples": c} for n, c in persons]},
         "\n".join(f"{n}\t{c}" for n, c in persons) if persons else "(empty gallery)")


@gallery.command("remove")
@click.argument("name")
@gallery_option
@json_option
@click.pass_context
def gallery_remove(ctx: click.Context, name: str, gallery: str | None) -> None:
    """Remove NAME with all their samples, negative samples and thumbnail."""
    name = normalize_name(name)
    with Gallery(gallery_dir(ctx, gallery), create=False) as gal:
        n = gal.remove(name)
    emit(ctx, {"name": name, "removed_samples": n}, f"removed {name} ({n} samples)")


@gallery.command("rename")
@click.argument("old")
@click.argument("new")
@gallery_option
@json_option
@click.pass_context
def gallery_rename(ctx: click.Context, old: str, new: str, gallery: str | None) -> None:
    """Rename OLD to NEW, keeping their samples, negative samples and thumbnail.

    NEW must not be enrolled yet: two persons are never merged (remove one of them first)."""
    old, new = normalize_name(old), normalize_name(new)
    with Gallery(gallery_dir(ctx, gallery), create=False) as gal:
        n = gal.rename(old, new)
    emit(ctx, {"old": old, "new": new, "samples": n}, f"renamed {old} to {new} ({n} samples)")


def _health_lines(h: GalleryHealth) -> list[str]:
    def known(v: object) -> str:
        return "?" if v is None else str(v)

    lines = [f"gallery    {h.path}", f"database   {h.database}", f"integrity  {known(h.integrity)}",
             f"persons    {known(h.persons)}", f"samples    {known(h.samples)}",
             f"negatives  {known(h.negatives)}", f"thumbnails {known(h.thumbnails)}",
             f"generation {known(h.generation)}",
             f"index      {h.index}" + (f" ({h.index_file})" if h.index_file else "")]
    if h.leftover_index_files:
        lines.append(f"leftovers  {', '.join(h.leftover_index_files)}")
    lines += [f"problem: {p}" for p in h.problems]
    lines.append("healthy" if h.healthy else f"{len(h.problems)} problem(s) found")
    return lines


@gallery.command("check")
@gallery_option
@json_option
@click.pass_context
def gallery_check(ctx: click.Context, gallery: str | None) -> None:
    """Check the gallery without changing it: database integrity, counts, the index. Exit 1 on a problem."""
    h = check(gallery_dir(ctx, gallery))
    emit(ctx, h.to_dict(), "\n".join(_health_lines(h)))
    if not h.healthy:
        ctx.exit(1)


@gallery.command("repair")
@gallery_option
@json_option
@click.pass_context
def gallery_repair(ctx: click.Context, gallery: str | None) -> None:
    """Rebuild the index from the database when it is missing, stale or damaged.

    A damaged database is refused (nothing is changed): restore it from a backup."""
    r = repair(gallery_dir(ctx, gallery))
    done = (f"rebuilt {r.rebuilt} from {r.samples} sample(s) (index was {r.before})" if r.rebuilt
            else f"nothing to repair: the index is {r.before}")
    lines = [done] + [f"problem: {p}" for p in r.after.problems]
    emit(ctx, r.to_dict(), "\n".join(lines))
    if not r.after.healthy:
        ctx.exit(1)
