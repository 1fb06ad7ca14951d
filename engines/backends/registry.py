"""The backend registry: which backends exist, which one ``auto`` means here, and building one.

Kept apart from ``base`` so the implementations import only the interface and the registry imports the
implementations (lazily: TensorRT is an optional extra) -- imports flow one way, with no circle.
"""
from __future__ import annotations

import logging
from pathlib import Path

from engines.backends.base import BACKEND_NAMES, BackendName, BackendUnavailable, InferenceBackend

log = logging.getLogger(__name__)


def tensorrt_available() -> tuple[bool, str]:
    """Whether TensorRT + pycuda import and a CUDA GPU answers, with the reason when not."""
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:  # ImportError, or a stub wheel failing at import
        return False, f"tensorrt does not import ({type(exc).__name__}: {exc})"
    try:
        import pycuda.driver as cuda

        cuda.init()
        if cuda.Device.count() < 1:
            return False, "no CUDA device found"
    except Exception as exc:
        return False, f"pycuda/CUDA not usable ({type(exc).__name__}: {exc})"
    return True, "tensorrt and a CUDA GPU are present"


def resolve_backend(requested: BackendName) -> str:
    """Turn ``auto`` into a concrete backend name and log why; fail clearly on an impossible request."""
    if requested == "onnxruntime":
        return "onnxruntime"
    ok, why = tensorrt_available()
    if requested == "tensorrt":
        if not ok:
            raise BackendUnavailable(f"engine 'tensorrt' was requested but is unavailable: {why}")
        return "tensorrt"
    if requested != "auto":
        raise ValueError(f"unknown engine {requested!r}; use one of {', '.join(BACKEND_NAMES)}")
    chosen = "tensorrt" if ok else "onnxruntime"
    log.info("engine auto -> %s (%s)", chosen, why)
    return chosen


def create_backend(
    onnx_path: str | Path,
    engine: BackendName = "auto",
    *,
    threads: int = 0,
    shared_cpu: bool = False,
    trt_options: dict | None = None,
) -> InferenceBackend:
    """Build the backend for ``onnx_path``. ``threads`` applies to ONNX Runtime (0 = its default);
    ``shared_cpu`` says other busy processes share the cores (the pipeline stages), so ONNX Runtime's
    threads must not spin while idle."""
    kind = resolve_backend(engine)
    if kind == "tensorrt":
        from engines.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(onnx_path, **(trt_options or {}))
    from engines.backends.onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(onnx_path, threads=threads, spin=not shared_cpu)
