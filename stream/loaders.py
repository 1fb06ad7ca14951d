"""The detector, embedder and photo analyzer a config asks for, built one way for everyone.

The pipeline stages, the CLI (photos, evaluation), ``facewatch models build-engines`` and the benchmarks
all come here, so they detect with the same thresholds (score and NMS from ``detector``) and a TensorRT
engine is built once, with exactly the profile (batch range, fixed detector input, precision) every user
of it looks up in the engine cache.
"""
from __future__ import annotations

import os

from engines.analyzer import FaceAnalyzer
from engines.face_model import FaceDetector
from engines.fusion import FusedEmbedder
from engines.factory import DetectorParams, EngineChoice, load_detector, load_embedder
from engines.model_store import ModelStore
from stream.config import Config, RetinaFaceConfig

DETECT_OPT_BATCH = 4  # TensorRT tunes for this many frames per batch (a few cameras at once)


def live_threads(cfg: Config) -> int:
    """ONNX Runtime threads per model in a live pipeline: ``engines.threads``, or when that is 0 (automatic) half
    the cores but at least 2 (never more than there are). Why not all cores: detect and embed run side by side
    with capture's decoding, the alert stage, the HTTP server and whoever watches it. Why at least 2: with idle
    threads that do not spin (``shared_cpu``), a second thread halves a whole-frame detection (warm-up, periodic,
    large motion) that a lone thread takes 90-120 ms for at 720p, and those frames set the p99. Measured on 2 cores,
    A B A B in one session (``tools/bench_pipeline.py --skip-recorded --cameras N --threads T``): 1 camera p50/p99
    39/98 and 40/92 ms with 2 threads against 50/140 and 51/135 with 1; 4 cameras p99 242 and 190 against 298 and
    250; with the web UI open (``tools/bench_browser.py --cameras 4``) capture->on screen p99 556 against 886 ms.
    (An older measurement, from before idle threads stopped spinning, had found the opposite.)"""
    cores = os.cpu_count() or 2
    return cfg.engines.threads or min(cores, max(2, cores // 2))


def engine_choice(cfg: Config, *, shared_cpu: bool = True, rebuild: bool = False, engine: str | None = None,
                  live: bool = False) -> EngineChoice:
    """``shared_cpu``: other busy processes share the cores (the pipeline), so idle ONNX Runtime threads must not spin.
    ``live``: a live pipeline stage (see ``live_threads``)."""
    e = cfg.engines
    return EngineChoice(engine=engine or e.engine, threads=live_threads(cfg) if live else e.threads, precision=e.precision,
                        detector_input=tuple(e.detector_input), shared_cpu=shared_cpu, rebuild=rebuild)


def detector_params(cfg: Config) -> DetectorParams:
    d = cfg.detector
    extra = {"max_side": d.max_side} if isinstance(d, RetinaFaceConfig) else {"range": d.range}
    return DetectorParams(score_threshold=d.score_threshold, nms_threshold=d.nms_threshold, model=d.model, **extra)


def pipeline_detector(cfg: Config, **choice) -> FaceDetector:
    bc = cfg.detect_batch
    return load_detector(ModelStore(cfg.home), engine_choice(cfg, **choice), detector_params(cfg),
                         max_batch=bc.max_batch, opt_batch=min(bc.max_batch, DETECT_OPT_BATCH))


def pipeline_embedder(cfg: Config, **choice) -> FusedEmbedder:
    """The embedder of ``recognition.profile`` (its ``model_id`` is what galleries and calibrations record)."""
    return load_embedder(ModelStore(cfg.home), engine_choice(cfg, **choice), max_batch=cfg.embed_batch.max_batch,
                         profile_name=cfg.recognition.profile)


def photo_analyzer(cfg: Config, *, threads: int | None = None) -> FaceAnalyzer:
    """Detect + embed for still photos (CLI, evaluation): the pipeline's models, in a process of its own."""
    if threads is not None:
        cfg = cfg.model_copy(update={"engines": cfg.engines.model_copy(update={"threads": threads})})
    return FaceAnalyzer(pipeline_detector(cfg, shared_cpu=False), pipeline_embedder(cfg, shared_cpu=False))
