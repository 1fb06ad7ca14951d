"""The one small interface every inference backend implements, and the backend names.

Why an interface: the face models (``Detector``, ``Embedder``) only need "load this ONNX file, run a
batch, tell me the shapes", so the same model code runs on ONNX Runtime (CPU, the tested default) and
on TensorRT (GPU, optional extra) without a second code path.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import numpy as np

BackendName = Literal["auto", "onnxruntime", "tensorrt"]
#: Every name a config may give (``engines.engine``); "auto" picks TensorRT when it can run, else ONNX Runtime.
BACKEND_NAMES: tuple[str, ...] = BackendName.__args__  # type: ignore[attr-defined]


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run on this machine (library missing, no GPU, ...)."""


class InferenceBackend(ABC):
    """Runs one ONNX model. Inputs and outputs are plain float32 numpy arrays."""

    name: str = "abstract"

    @property
    @abstractmethod
    def input_shapes(self) -> dict[str, tuple]:
        """Input name -> shape; dynamic dimensions are strings or None."""

    @property
    @abstractmethod
    def output_shapes(self) -> dict[str, tuple]:
        """Output name -> shape; dynamic dimensions are strings or None."""

    @abstractmethod
    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run one batch; outputs in the model's output order."""
