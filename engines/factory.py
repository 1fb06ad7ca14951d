"""Build the two face models on the chosen backend, the one way every caller does it.

The CLI, the detect and embed stages, ``models build-engines`` and the benchmarks all load models here
(through ``stream.loaders``, which reads the config), so a TensorRT engine is always built with the
profile its user will run (batch range, fixed detector input) and the detector always knows when it
must letterbox to that fixed input. No threshold has a default here: the config is their one source.
"""
from __future__ import annotations

from dataclasses import dataclass

from engines.backends.base import BackendName
from engines.backends.engine_cache import EngineProfile, profile_for
from engines.backends.registry import create_backend
from engines.detector import Detector
from engines.embedder import CHIP_SIZE, Embedder
from engines.face_model import FaceDetector, FaceEmbedder
from engines.fusion import FusedEmbedder
from engines.model_store import BLAZEFACE_FILES, DETECTOR_FILE, EMBEDDER_FILE, ModelStore
from engines.profiles import profile


@dataclass
class EngineChoice:
    """What the config's ``engines`` section says, plus how this process shares the machine."""

    engine: BackendName
    threads: int
    precision: str
    detector_input: tuple[int, int]
    shared_cpu: bool = False  # other busy processes share the cores (pipeline stages)
    rebuild: bool = False  # TensorRT: build the engine even when a cached one fits


@dataclass(frozen=True)
class DetectorParams:
    """The detector model and its decision parameters (``detector`` in the config)."""

    score_threshold: float
    nms_threshold: float
    max_side: int = 1920  # retinaface
    model: str = "retinaface"
    range: str = "full"  # mediapipe: short | full


def detector_profile(max_batch: int, opt_batch: int, detector_input: tuple[int, int]) -> EngineProfile:
    return profile_for("detector", max_batch=max_batch, opt_batch=min(opt_batch, max_batch), input_hw=tuple(detector_input))


def embedder_profile(max_batch: int, opt_batch: int | None = None, chip_size: int = CHIP_SIZE) -> EngineProfile:
    return profile_for("embedder", max_batch=max_batch, opt_batch=opt_batch, input_hw=(chip_size, chip_size))


def load_detector(store: ModelStore, choice: EngineChoice, params: DetectorParams, *, max_batch: int,
                  opt_batch: int) -> FaceDetector:
    """The configured detector. BlazeFace runs in MediaPipe's own TFLite runtime, whatever ``choice.engine`` says."""
    if params.model == "mediapipe":
        from engines.blazeface import BlazeFaceDetector

        return BlazeFaceDetector(store.path(BLAZEFACE_FILES[params.range]), range=params.range,  # type: ignore[arg-type]
                                 score_threshold=params.score_threshold, nms_threshold=params.nms_threshold)
    if params.model != Detector.name:
        raise ValueError(f"unknown detector model {params.model!r}; known: retinaface, mediapipe")
    trt = {"precision": choice.precision, "rebuild": choice.rebuild,
           "profile": detector_profile(max_batch, opt_batch, choice.detector_input)}
    backend = create_backend(store.path(DETECTOR_FILE), choice.engine, threads=choice.threads,
                             shared_cpu=choice.shared_cpu, trt_options=trt)
    fixed = tuple(choice.detector_input) if backend.name == "tensorrt" else None
    return Detector(backend, score_threshold=params.score_threshold, nms_threshold=params.nms_threshold,
                    max_side=params.max_side, fixed_input=fixed, run_batch=max_batch if fixed else None)


EMBEDDER_MODELS = ("dlib_resnet_v1", "facenet_keras_128", "insightface_w600k_mbf")


def embedder_class(model: str) -> tuple[type[FaceEmbedder], str]:
    """An embedder model's class and model file, by ``FaceEmbedder.name``; FaceNet is imported only when asked for."""
    if model == Embedder.name:
        return Embedder, EMBEDDER_FILE
    if model == "facenet_keras_128":
        from engines.facenet import FACENET_FILE, FaceNetEmbedder

        return FaceNetEmbedder, FACENET_FILE
    if model == "insightface_w600k_mbf":
        from engines.arcface import ARCFACE_FILE, ArcFaceEmbedder

        return ArcFaceEmbedder, ARCFACE_FILE
    raise ValueError(f"unknown embedder model {model!r}; known: {', '.join(EMBEDDER_MODELS)}")


def load_model_embedder(store: ModelStore, choice: EngineChoice, model: str, *, max_batch: int) -> FaceEmbedder:
    """One embedder model (``FaceEmbedder.name``) on the chosen backend."""
    cls, file = embedder_class(model)
    trt = {"precision": choice.precision, "rebuild": choice.rebuild,
           "profile": embedder_profile(max_batch, chip_size=cls.chip_size)}
    backend = create_backend(store.path(file), choice.engine, threads=choice.threads,
                             shared_cpu=choice.shared_cpu, trt_options=trt)
    return cls(backend, max_batch=max_batch)


def load_embedder(store: ModelStore, choice: EngineChoice, *, max_batch: int, profile_name: str = "fast") -> FusedEmbedder:
    """The recognition profile's embedder: its members on the chosen backend, fused with the profile's weights
    (a one-member profile is that member with the profile id as its ``model_id``)."""
    prof = profile(profile_name)
    members = [load_model_embedder(store, choice, m.model, max_batch=max_batch) for m in prof.members]
    return FusedEmbedder(members, prof.weights, prof.id)
