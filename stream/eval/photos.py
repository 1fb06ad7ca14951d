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


class EvalError(ValueError):
    """Evaluation input that cannot give an honest number (a malformed file, photos that are not there); the
    message names the file (and line) and the CLI shows it as one line, exit 2."""


def read_text_file(path: Path, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise EvalError(f"{path}: not a text file ({what})") from None
    except OSError as exc:
        raise EvalError(f"{path}: cannot read ({exc.strerror})") from None


def require_plotting(plot: Path | None) -> None:
    """Fail before the work when a plot is asked for and matplotlib (the ``eval`` extra) is missing."""
    if plot is None:
        return
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise EvalError(f"--plot {plot}: needs matplotlib: pip install 'facewatch[eval]'") from None
    if not Path(plot).resolve().parent.is_dir():
        raise EvalError(f"--plot {plot}: no such directory {Path(plot).parent}")


@dataclass(frozen=True)
class Pair:
    a: tuple[str, int]
    b: tuple[str, int]
    same: bool


def parse_pairs(path: Path) -> list[Pair]:
    """LFW pairs format: header ``S<TAB>N``, then S sets of N same (``name i j``) and N different pairs.

    Anything else is an ``EvalError`` naming the line: a wrong number is worse than no number.
    """
    numbered = [(n, ln.split()) for n, ln in enumerate(read_text_file(path, "an LFW pairs file").splitlines(), 1)
                if ln.strip()]
    if not numbered:
        raise EvalError(f"{path}: empty pairs file")
    n0, head = numbered[0]
    if len(head) not in (1, 2) or not all(h.isdigit() for h in head):
        raise EvalError(f"{path}:{n0}: not an LFW pairs file (the first line must be 'SETS<TAB>N', got {' '.join(head)[:40]!r})")
    pairs = []
    for n, parts in numbered[1:]:
        try:
            if len(parts) == 3:
                pairs.append(Pair((parts[0], int(parts[1])), (parts[0], int(parts[2])), True))
            elif len(parts) == 4:
                pairs.append(Pair((parts[0], int(parts[1])), (parts[2], int(parts[3])), False))
            else:
                raise EvalError(f"{path}:{n}: expected 3 fields (name i j) or 4 (name1 i name2 j), got {len(parts)}")
        except ValueError as exc:
            if isinstance(exc, EvalError):
                raise
            raise EvalError(f"{path}:{n}: photo numbers must be whole numbers: {' '.join(parts)[:60]!r}") from None
    if not pairs:
        raise EvalError(f"{path}: no pairs after the header")
    if all(p.same for p in pairs) or not any(p.same for p in pairs):
        raise EvalError(f"{path}: needs both same-person and different-person pairs")
    return pairs


def require_photos(cache: "EmbeddingCache", pairs: list[Pair]) -> None:
    """Every photo a pairs file names must exist under the root; a wrong ``--root`` would otherwise score every
    pair as a failure and print a meaningless accuracy with exit 0."""
    paths = {cache.path(*side) for p in pairs for side in (p.a, p.b)}
    missing = sorted(str(p) for p in paths if not p.is_file())
    if missing:
        raise EvalError(f"--root {cache.root}: {len(missing)} of the {len(paths)} photos the pairs file names are "
                        f"not there (first: {missing[0]})")


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
