"""``verify`` (1:1) and ``identify`` (1:N) on still photos."""
from __future__ import annotations

import click
import numpy as np

from stream.cli.common import UserError, emit, gallery_dir, gallery_option, get_analyzer, get_config, json_option, one_face
from stream.media.images import load_image
from stream.store.gallery import Gallery, accepts


@click.command()
@click.argument("img1", type=click.Path())
@click.argument("img2", type=click.Path())
@json_option
@click.pass_context
def verify(ctx: click.Context, img1: str, img2: str) -> None:
    """1:1 -- are the (largest) faces in IMG1 and IMG2 the same person?"""
    thr = get_config(ctx).threshold
    images = [load_image(img1), load_image(img2)]  # a bad photo is reported before the models load
    analyzer = get_analyzer(ctx)
    a, b = (one_face(analyzer, path, image=im) for path, im in zip((img1, img2), images))
    score = float(np.dot(a.embedding, b.embedding))
    same = accepts(score, thr)
    emit(ctx, {"score": score, "threshold": thr, "same": same},
         f"{'SAME' if same else 'DIFFERENT'} person: score {score:.4f} (threshold {thr:.4f})")


@click.command()
@click.argument("img", type=click.Path())
@gallery_option
@click.option("--allow-empty-gallery", is_flag=True, help="answer even when no one is enrolled (every face is unknown)")
@json_option
@click.pass_context
def identify(ctx: click.Context, img: str, gallery: str | None, allow_empty_gallery: bool) -> None:
    """1:N -- who, from the gallery, is in IMG? Faces below the threshold are "unknown"."""
    from stream.preflight import gallery_only_problems

    cfg = get_config(ctx)
    gdir = gallery_dir(ctx, gallery)
    problems = gallery_only_problems(cfg, gdir, allow_empty_gallery=allow_empty_gallery)
    if problems:
        raise UserError(problems[0], code="gallery", details=problems)
    image = load_image(img)
    analyzer = get_analyzer(ctx)
    gal = Gallery(gdir, readonly=True, **cfg.gallery_args())
    faces = analyzer.analyze(image)
    probes = np.stack([f.embedding for f in faces]) if faces else np.zeros((0, analyzer.embedder.dim), np.float32)
    cands = gal.search(probes, k=cfg.matching.top_k)
    thr = cfg.threshold
    out = [{"box": [round(float(v), 1) for v in f.box], "det_score": round(f.det_score, 4),
            "identity": c.accepted(thr), "score": round(c.score, 4)} for f, c in zip(faces, cands)]
    if not faces:
        click.echo(f"facewatch: {img}: no face found", err=True)
    lines = [f"{o['identity'] or 'unknown'}\tscore {o['score']:.4f}\tbox {o['box']}" for o in out]
    emit(ctx, {"faces": out, "threshold": thr}, "\n".join(lines) if lines else "no face found")
