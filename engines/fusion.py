"""Score-level fusion of several embedders as one embedder (the ``accurate`` profile, ``engines/profiles.py``).

The fused vector of a face is ``[sqrt(a1) e1, sqrt(a2) e2, ...]`` with each member's unit embedding ``e_i`` and the
profile's weights ``a_i`` (summing to 1), so it has unit length and the cosine of two fused vectors is
``sum_i a_i cos_i``: the z-normalised score sum of the members up to an increasing affine map. Each member cuts
its own chip from the canonical crop.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engines.face_model import Capabilities, FaceEmbedder, check_crops


class FusedEmbedder(FaceEmbedder):
    """Members and their weights; ``name`` is the profile id (weights included)."""

    def __init__(self, members: Sequence[FaceEmbedder], weights: Sequence[float], profile_id: str) -> None:
        if len(members) != len(weights) or not members:
            raise ValueError("one weight per member embedder is needed")
        if abs(sum(weights) - 1.0) > 1e-6 or min(weights) <= 0:
            raise ValueError(f"fusion weights must be positive and sum to 1, got {list(weights)}")
        self.members = list(members)
        self.scales = np.sqrt(np.asarray(weights, dtype=np.float32))
        self._id = profile_id
        self.dim = sum(m.dim for m in self.members)  # type: ignore[misc]
        self.capabilities = Capabilities(prefers_batching=all(m.capabilities.prefers_batching for m in self.members))

    @property
    def model_id(self) -> str:
        return self._id

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:  # pragma: no cover - members cut their own chips
        raise TypeError("a fused embedder embeds crops (embed_crops): each member cuts its own chip")

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        crops = check_crops(crops)
        parts = [s * m.embed_crops(crops) for m, s in zip(self.members, self.scales)]
        out = np.concatenate(parts, axis=1).astype(np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
