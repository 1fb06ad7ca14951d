"""``gallery enroll | list | remove``: the watchlist."""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from stream.cli.common import Group, NoFaceError, emit, gallery_dir, gallery_option, get_analyzer, json_option, one_face
from stream.media.images import ImageError
from stream.store.gallery import DB_FILE, Gallery, GalleryError


@click.group(cls=Group)
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
    analyzer = get_analyzer(ctx)
    embeddings, sources, skipped = [], [], []
    for path in images:
        try:
            face = one_face(analyzer, path, largest=largest)
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
    d = gallery_dir(ctx, gallery)
    if not (d / DB_FILE).exists():
        raise GalleryError(f"{d}: no gallery here")
    n = Gallery(d).remove(name)
    emit(ctx, {"name": name, "removed_samples": n}, f"removed {name} ({n} samples)")
