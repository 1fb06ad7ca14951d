"""Labelled photos for evaluation: the LFW pairs format, and each photo's embedding computed once.

Policy for photos where no face is detected (after the padded retry): the photo counts as a failure to
enrol/acquire. Every pair that uses it gets score -inf (always rejected), so failures lower TAR instead
of being silently dropped; their number is reported.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from engines.analyzer import largest_face
from stream.media.images import ImageError, load_image

FAIL_SCORE = -np.inf


@dataclass(frozen=True)
class Pair:
    a: tuple[str, int]
    b: tuple[str, int]
    same: bool


def parse_pairs(path: Path) -> list[Pair]:
    """LFW pairs format: header ``S<TAB>N``, then S sets of N same (``name i j``) and N different pairs."""
    lines = [ln.split() for ln in Path(path).read_text().splitlines() if ln.strip()]
    if not lines or len(lines[0]) not in (1, 2):
        raise ValueError(f"{path}: not an LFW pairs file (bad header)")
    pairs = []
    for n, parts in enumerate(lines[1:], start=2):
        if len(parts) == 3:
            pairs.append(Pair((parts[0], int(parts[1])), (parts[0], int(parts[2])), True))
        elif len(parts) == 4:
            pairs.append(Pair((parts[0], int(parts[1])), (parts[2], int(parts[3])), False))
        else:
            raise ValueError(f"{path}:{n}: expected 3 or 4 fields, got {len(parts)}")
    return pairs


class EmbeddingCache:
    """Embedding of the largest face of each photo, computed once; None when no face / unreadable."""

    def __init__(self, analyzer, root: Path) -> None:
        self.analyzer, self.root = analyzer, Path(root)
        self.cache: dict[Path, np.ndarray | None] = {}
        self.failures: dict[str, str] = {}
        self.seconds = 0.0

    def path(self, name: str, i: int) -> Path:
        return self.root / name / f"{i}.jpg"

    def get(self, path: Path) -> np.ndarray | None:
        if path not in self.cache:
            t = time.perf_counter()
            try:
                faces = self.analyzer.analyze(load_image(path))
            except ImageError as exc:
                faces, self.failures[str(path)] = [], str(exc)
            self.seconds += time.perf_counter() - t
            if not faces and str(path) not in self.failures:
                self.failures[str(path)] = "no face detected"
            self.cache[path] = (
                largest_face(faces).embedding if faces else None
            )
        return self.cache[path]


def pair_scores(cache: EmbeddingCache, pairs: list[Pair], progress: bool = True, score=None) -> np.ndarray:
    """Similarity of each pair: cosine of the L2-normalised embeddings unless ``score(a, b)`` is given
    (tools/compare_peers.py scores face_recognition by its own negated Euclidean distance)."""
    scores = np.empty(len(pairs))
    for k, p in enumerate(tqdm(pairs, desc="pairs", unit="pair", disable=not progress)):
        a, b = cache.get(cache.path(*p.a)), cache.get(cache.path(*p.b))
        scores[k] = FAIL_SCORE if a is None or b is None else (float(a @ b) if score is None else score(a, b))
    return scores
