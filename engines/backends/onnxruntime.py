"""ONNX Runtime backend: the CPU path, and the one CI tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from engines.backends.base import InferenceBackend


class OnnxRuntimeBackend(InferenceBackend):
    """A CPU ``InferenceSession`` with a configurable thread count.

    ``spin=False`` stops idle intra-op threads from busy-waiting for the next call. That is right when
    several processes share the cores (the pipeline): measured on 2 cores with 4 live 720p cameras, the
    detector processed 14.4 frames/s without spinning and 9.7 with it, because the spinning threads of one
    stage ate the CPU time of the others. A lone process (CLI, evaluation) keeps the faster default.
    """

    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path, *, threads: int = 0, spin: bool = True) -> None:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads > 0:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        if not spin:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
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
