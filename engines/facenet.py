"""FaceNet 128-d face embedder (Inception-ResNet-v1, Keras ``facenet_keras.h5`` converted to ONNX).

The weights come from ``engines.facenet_source`` and the ONNX graph from ``engines.facenet_convert``; the graph
takes already standardised chips (NCHW float32), so the preprocessing lives here, next to the chip geometry it
belongs with:

- chip: the ArcFace 5-point template scaled by 160/112 to the network's 160x160 input, RGB. This and the
  standardisation below are what ``../shared/models/MODELS.md`` measured on the dev wild set (TAR 83.9 % at
  FAR 1e-3); FaceNet's own training crops were MTCNN boxes with a margin, so other crops are possible but were
  not better there.
- standardisation: FaceNet's ``prewhiten``: per image, ``(x - mean) / max(std, 1/sqrt(n))`` over all pixels and
  channels (``n = 160 * 160 * 3``). Per image rather than fixed constants because that is how the network was
  trained: it removes exposure and contrast differences before the first conv. The ``1/sqrt(n)`` floor only
  keeps a flat (constant) chip from dividing by zero.
- output: L2-normalised here (the graph returns the raw bottleneck vector).
"""
from __future__ import annotations

import numpy as np

from engines.backends.base import InferenceBackend
from engines.face_model import _ARCFACE_112, Capabilities, FaceEmbedder, normalise_rows

FACENET_FILE = "facenet_keras_128.onnx"
CHIP_SIZE = 160
EMBEDDING_DIM = 128
#: ArcFace's 112 px template (RetinaFace landmark order) scaled to the 160 px chip.
TEMPLATE = _ARCFACE_112 * (CHIP_SIZE / 112.0)
#: The ``1/sqrt(n)`` floor of ``prewhiten``'s standard deviation, n = every value of one chip.
STD_FLOOR = float(1.0 / np.sqrt(CHIP_SIZE * CHIP_SIZE * 3))  # a Python float: a numpy float64 would promote


def prewhiten(chips: np.ndarray) -> np.ndarray:
    """float32 ``[N, 3, 160, 160]`` (NCHW, what the graph reads) from RGB chips ``[N, 160, 160, 3]``."""
    x = np.asarray(chips, dtype=np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    std = np.maximum(x.std(axis=(1, 2, 3), keepdims=True), STD_FLOOR)
    return np.ascontiguousarray(((x - mean) / std).transpose(0, 3, 1, 2), dtype=np.float32)


class FaceNetEmbedder(FaceEmbedder):
    """FaceNet 128-d on any backend. Chips are RGB uint8 ``[N, 160, 160, 3]``."""

    name = "facenet_keras_128"
    dim = EMBEDDING_DIM
    chip_size = CHIP_SIZE
    template = TEMPLATE

    def __init__(self, backend: InferenceBackend, *, max_batch: int = 32) -> None:
        self.backend = backend
        self.input_name = next(iter(backend.input_shapes))
        self.max_batch = max_batch
        self.capabilities = Capabilities(prefers_batching=backend.name != "onnxruntime")

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        chips = np.asarray(chips)
        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"expected chips of shape [N, {CHIP_SIZE}, {CHIP_SIZE}, 3], got {chips.shape}")
        out = np.empty((len(chips), EMBEDDING_DIM), dtype=np.float32)
        for start in range(0, len(chips), self.max_batch):
            part = chips[start : start + self.max_batch]
            out[start : start + len(part)] = self.backend.run({self.input_name: prewhiten(part)})[0]
        return normalise_rows(out)
