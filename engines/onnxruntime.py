"""ONNX Runtime backend: the CPU path, and the one CI tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from engines.backend import InferenceBackend


class OnnxRuntimeBackend(InferenceBackend):
    """A CPU ``InferenceSession`` with a configurable thread count."""

    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path, *, threads: int = 0) -> None:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads > 0:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # warnings about unused initialisers are noise for users
        self.path = Path(onnx_path)
        self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._inputs = {i.name: tuple(i.shape) for i in self.session.get_inputs()}
        self._outputs = {o.name: tuple(o.shape) for o in self.session.get_outputs()}

    @property
    def input_shapes(self) -> dict[str, tuple]:
        return dict(self._inputs)

    @property
    def output_shapes(self) -> dict[str, tuple]:
        return dict(self._outputs)

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, inputs)
