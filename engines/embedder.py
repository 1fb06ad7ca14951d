"""dlib ResNet v1 face embedder (128-d): align 5 landmarks to dlib's chip template, embed, L2-normalise.

The template reproduces dlib's own 0.25-padded 150x150 chip in RetinaFace's landmark order
(``../shared/models/MODELS.md``); mean subtraction and scaling live inside the converted ONNX graph, so
the chip goes in as raw RGB 0..255.
"""
from __future__ import annotations

import numpy as np

from engines.align import warp_chip
from engines.backends.base import InferenceBackend
from engines.face_model import Capabilities, FaceEmbedder
from engines.image import to_bgr

CHIP_SIZE = 150  # dlib's chip: the converter and the TensorRT profile read it from here
EMBEDDING_DIM = 128
TEMPLATE = np.array(
    [[46.60, 45.11], [100.15, 45.50], [73.21, 77.39], [50.84, 99.92], [95.64, 100.13]], dtype=np.float64
)


class Embedder(FaceEmbedder):
    """dlib ResNet v1 on any backend. Chips are RGB uint8 ``[N, 150, 150, 3]``."""

    name = "dlib_resnet_v1"
    dim = EMBEDDING_DIM
    chip_size = CHIP_SIZE
    template = TEMPLATE

    def __init__(self, backend: InferenceBackend, *, max_batch: int = 32) -> None:
        self.backend = backend
        self.input_name = next(iter(backend.input_shapes))
        self.max_batch = max_batch
        self.capabilities = Capabilities(prefers_batching=backend.name != "onnxruntime")

    @staticmethod
    def align(image_bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """One RGB chip straight from a frame (the converter parity test and the TensorRT test use it)."""
        chip = warp_chip(to_bgr(image_bgr), landmarks, TEMPLATE, CHIP_SIZE)
        return chip[:, :, ::-1]

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        return self.embed(chips)

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """L2-normalised float32 embeddings ``[N, 128]`` for RGB chips ``[N, 150, 150, 3]``."""
        chips = np.asarray(chips)
        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"expected chips of shape [N, 150, 150, 3], got {chips.shape}")
        out = np.empty((len(chips), EMBEDDING_DIM), dtype=np.float32)
        for start in range(0, len(chips), self.max_batch):
            part = chips[start : start + self.max_batch]
            blob = np.ascontiguousarray(part.transpose(0, 3, 1, 2), dtype=np.float32)
            out[start : start + len(part)] = self.backend.run({self.input_name: blob})[0]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)
