"""Many looks of one face as one vector: the rule that decides a track, and a person's template.

Why: a single photo pair is the hardest case. A track (or a pass of a person in front of a camera) gives several
looks, and the mean of their unit embeddings cancels much of what varies between looks (pose, light, blur) while
keeping what the looks share (the person). Measured with dlib on wild_dev (3 enrolment photos, passes of 3 other
photos; issue 17): "mean of the pass vs mean of the samples" keeps TAR 95.5 % at a pass FAR of 1e-4 where the
best single comparison of a 2-vote rule keeps 87.6 %. The score it gives is still a cosine, but of means: it
needs its own calibrated threshold (``facewatch calibrate`` calibrates this rule on pass-level trials).

Both functions are pure numpy, shared by the match stage, the gallery, ``calibrate`` and the evaluations, so the
rule that is calibrated is the rule that decides.
"""
from __future__ import annotations

import numpy as np

RULE = "mean-of-track-vs-template"  # recorded in calibrations and events: how a decision was made


def unit(v: np.ndarray) -> np.ndarray:
    """``v`` scaled to unit length (float32)."""
    v = np.asarray(v, dtype=np.float32)
    return v / max(float(np.linalg.norm(v)), 1e-12)


def track_vector(embeddings: np.ndarray, quality: np.ndarray | None = None) -> np.ndarray:
    """The quality-weighted mean of a track's unit embeddings ``[m, d]``, renormalised to unit length.

    ``quality`` (>= 0, one per embedding) weights better looks more; None = equal weights. Weights are clipped
    below at 5 % of the best one, so no look that was good enough to be embedded is ignored entirely.
    """
    e = np.asarray(embeddings, dtype=np.float32).reshape(len(embeddings), -1)
    if len(e) == 0:
        raise ValueError("a track vector needs at least one embedding")
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    if quality is None:
        w = np.ones(len(e), np.float32)
    else:
        w = np.asarray(quality, dtype=np.float32).reshape(-1)
        if len(w) != len(e) or not np.all(np.isfinite(w)):
            raise ValueError("one finite quality per embedding is needed")
        w = np.maximum(w, 0.05 * max(float(w.max()), 1e-6))
    return unit((w[:, None] * e).sum(0))


def templates(samples: np.ndarray, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner ids, unit template per owner): the mean of each owner's unit samples, renormalised."""
    samples = np.asarray(samples, dtype=np.float32)
    owners = np.asarray(owners)
    ids, inv = np.unique(owners, return_inverse=True)
    out = np.zeros((len(ids), samples.shape[1] if samples.ndim == 2 else 0), np.float32)
    np.add.at(out, inv, samples / np.maximum(np.linalg.norm(samples, axis=1, keepdims=True), 1e-12))
    return ids, out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
