"""Build the two face models on the chosen backend, the one way every caller does it.

The CLI, the detect and embed stages, ``models build-engines`` and the benchmarks all load models here,
so a TensorRT engine is always built with the profile its user will run (batch range, fixed detector
input) and the detector always knows when it must letterbox to that fixed input.
"""
from __future__ import annotations

from dataclasses import dataclass

from engines.backend import BackendName, create_backend
from engines.detector import Detector
from engines.embedder import Embedder
from engines.engine_cache import profile_for
from engines.models import DETECTOR_FILE, EMBEDDER_FILE, ModelStore


@dataclass
class EngineChoice:
    """What the config says about backends (mirrors ``engines`` in config/default.yaml)."""

    engine: BackendName = "auto"
    threads: int = 0
    precision: str = "fp16"
    detector_input: tuple[int, int] = (640, 640)
    shared_cpu: bool = False  # other busy processes share the cores (pipeline stages)
    rebuild: bool = False  # TensorRT: build the engine even when a cached one fits


def load_detector(store: ModelStore, choice: EngineChoice, *, max_batch: int = 1, opt_batch: int = 1,
                  score_threshold: float = 0.8, nms_threshold: float = 0.4, max_side: int = 1920) -> Detector:
    trt = {"precision": choice.precision, "rebuild": choice.rebuild,
           "profile": profile_for("detector", max_batch=max_batch, opt_batch=min(opt_batch, max_batch),
                                  detector_input=tuple(choice.detector_input))}
    backend = create_backend(store.path(DETECTOR_FILE), choice.engine, threads=choice.threads,
                             shared_cpu=choice.shared_cpu, trt_options=trt)
    fixed = tuple(choice.detector_input) if backend.name == "tensorrt" else None
    return Detector(backend, score_threshold=score_threshold, nms_threshold=nms_threshold, max_side=max_side,
                    fixed_input=fixed, run_batch=max_batch if fixed else None)


def load_embedder(store: ModelStore, choice: EngineChoice, *, max_batch: int = 32) -> Embedder:
    trt = {"precision": choice.precision, "rebuild": choice.rebuild,
           "profile": profile_for("embedder", max_batch=max_batch, opt_batch=max_batch)}
    backend = create_backend(store.path(EMBEDDER_FILE), choice.engine, threads=choice.threads,
                             shared_cpu=choice.shared_cpu, trt_options=trt)
    return Embedder(backend, max_batch=max_batch)
