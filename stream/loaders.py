"""The detector, embedder and photo analyzer a config asks for, built one way for everyone.

The pipeline stages, the CLI (photos, evaluation), ``facewatch models build-engines`` and the benchmarks
all come here, so they detect with the same thresholds (score and NMS from ``detector``) and a TensorRT
engine is built once, with exactly the profile (batch range, fixed detector input, precision) every user
of it looks up in the engine cache.
"""
from __future__ import annotations

from engines.analyzer import FaceAnalyzer
from engines.detector import Detector
from engines.embedder import Embedder
from engines.factory import DetectorParams, EngineChoice, load_detector, load_embedder
from engines.model_store import ModelStore
from stream.config import Config

DETECT_OPT_BATCH = 4  # TensorRT tunes for this many frames per batch (a few cameras at once)


def engine_choice(cfg: Config, *, shared_cpu: bool = True, rebuild: bool = False, engine: str | None = None) -> EngineChoice:
    """``shared_cpu``: other busy processes share the cores (the pipeline), so idle ONNX Runtime threads must not spin."""
    e = cfg.engines
    return EngineChoice(engine=engine or e.engine, threads=e.threads, precision=e.precision,
                        detector_input=tuple(e.detector_input), shared_cpu=shared_cpu, rebuild=rebuild)


def detector_params(cfg: Config) -> DetectorParams:
    d = cfg.detector
    return DetectorParams(score_threshold=d.score_threshold, nms_threshold=d.nms_threshold, max_side=d.max_side)


def pipeline_detector(cfg: Config, **choice) -> Detector:
    bc = cfg.detect_batch
    return load_detector(ModelStore(cfg.home), engine_choice(cfg, **choice), detector_params(cfg),
                         max_batch=bc.max_batch, opt_batch=min(bc.max_batch, DETECT_OPT_BATCH))


def pipeline_embedder(cfg: Config, **choice) -> Embedder:
    return load_embedder(ModelStore(cfg.home), engine_choice(cfg, **choice), max_batch=cfg.embed_batch.max_batch)


def photo_analyzer(cfg: Config, *, threads: int | None = None) -> FaceAnalyzer:
    """Detect + embed for still photos (CLI, evaluation): the pipeline's models, in a process of its own."""
    if threads is not None:
        cfg = cfg.model_copy(update={"engines": cfg.engines.model_copy(update={"threads": threads})})
    return FaceAnalyzer(pipeline_detector(cfg, shared_cpu=False), pipeline_embedder(cfg, shared_cpu=False))
