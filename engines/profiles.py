"""Recognition profiles: which embedders make a face's vector, and how their scores are fused.

``fast`` is dlib's ResNet alone. ``accurate`` fuses FaceNet 128-d with dlib by **score-level fusion with
per-model normalisation fitted on impostor scores**: each model's cosine is z-normalised with the mean and
standard deviation of its own impostor (different-person) cosines, and the z-scores are summed. Because

    z1 + z2 = s1 / sd1 + s2 / sd2 - (mu1 / sd1 + mu2 / sd2)

the sum is an increasing affine function of ``a1 s1 + a2 s2`` with ``a_i = (1 / sd_i) / sum_j (1 / sd_j)``, and that
weighted sum is exactly the inner product of two *fused vectors* ``[sqrt(a1) e1, sqrt(a2) e2]`` (each ``e_i`` a unit
embedding). A fused vector has unit length, so galleries, the HNSW indexes, thresholds and every score in
facewatch stay plain cosines of unit vectors; only the numbers mean the fused score. The weights are part of the
profile id recorded with every vector and every calibration, so a gallery or threshold made with other weights is
refused, never silently mixed.

Weights: impostor cosine statistics measured on wild_dev (33 identities, 2,339 photos, every within-family
cross-identity pair): ``python tools/fit_fusion.py --root ../shared/data/faces/wild_dev/ids``, which also shows
that weights fitted on one identity half carry to the other (README Accuracy) and re-fits them on a user's own
labelled photos. Only the ratio of the two standard deviations matters (the means cancel in a threshold).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ProfileName = Literal["fast", "accurate", "arcface"]
PROFILE_NAMES: tuple[str, ...] = ProfileName.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Member:
    """One embedder in a profile and its impostor-score statistics (for the fusion weight)."""

    model: str  # FaceEmbedder.name
    dim: int  # its embedding size
    impostor_mean: float
    impostor_std: float


@dataclass(frozen=True)
class Profile:
    name: str
    members: tuple[Member, ...]

    @property
    def weights(self) -> tuple[float, ...]:
        """a_i = (1/sd_i) / sum_j (1/sd_j): z-norm score fusion as one inner product (module docstring)."""
        inv = [1.0 / m.impostor_std for m in self.members]
        return tuple(v / sum(inv) for v in inv)

    @property
    def dim(self) -> int:
        """Length of the profile's vectors (the members' dimensions together)."""
        return sum(m.dim for m in self.members)

    @property
    def id(self) -> str:
        """``fast:dlib_resnet_v1`` or ``accurate:dlib_resnet_v1@0.4321+facenet_keras_128@0.5679``: what made a vector."""
        if len(self.members) == 1:
            return f"{self.name}:{self.members[0].model}"
        return f"{self.name}:" + "+".join(f"{m.model}@{w:.4f}" for m, w in zip(self.members, self.weights))


PROFILES: dict[str, Profile] = {
    "fast": Profile("fast", (Member("dlib_resnet_v1", 128, 0.0, 1.0),)),
    "accurate": Profile("accurate", (Member("dlib_resnet_v1", 128, 0.8412, 0.0315),
                                     Member("facenet_keras_128", 128, 0.0222, 0.1370))),
    # InsightFace's ArcFace MobileFaceNet alone (opt-in: non-commercial licence, engines/arcface.py).
    "arcface": Profile("arcface", (Member("insightface_w600k_mbf", 512, 0.0, 1.0),)),
}


def profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown recognition profile {name!r}; choose one of {', '.join(PROFILES)}") from None
