"""The detector and embedder a pipeline config asks for, built one way for the stages and for
``facewatch models build-engines``, so a pre-built TensorRT engine has exactly the profile (batch range,
fixed detector input, precision) the stages will look up in the engine cache."""
from __future__ import annotations

from engines.detector import Detector
from engines.embedder import Embedder
from engines.factory import EngineChoice, load_detector, load_embedder
from engines.models import ModelStore
from stream.config import Config

DETECT_OPT_BATCH = 4  # TensorRT tunes for this many frames per batch (a few cameras at once)


def engine_choice(cfg: Config, *, shared_cpu: bool = True, rebuild: bool = False, engine: str | None = None) -> EngineChoice:
    e = cfg.engines
    return EngineChoice(engine=engine or e.engine, threads=e.threads, precision=e.precision,
                        detector_input=tuple(e.detector_input), shared_cpu=shared_cpu, rebuild=rebuild)


def pipeline_detector(cfg: Config, **choice) -> Detector:
    bc = cfg.detect_batch
    return load_detector(ModelStore(cfg.home), engine_choice(cfg, **choice), max_batch=bc.max_batch,
                         opt_batch=min(bc.max_batch, DETECT_OPT_BATCH),
                         score_threshold=min(cfg.detector.score_threshold, cfg.quality.min_det_score),
                         nms_threshold=cfg.detector.nms_threshold, max_side=cfg.detector.max_side)


def pipeline_embedder(cfg: Config, **choice) -> Embedder:
    return load_embedder(ModelStore(cfg.home), engine_choice(cfg, **choice), max_batch=cfg.embed_batch.max_batch)
