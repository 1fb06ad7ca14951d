"""Labelled photos for evaluation: the LFW pairs format, and each photo's embedding computed once.

Policy for photos where no face is detected (after the padded retry), or whose face the pipeline's exposure gate
would drop (``quality.max_clipped``, :func:`engines.face_model.exposure_problem`): the photo counts as a failure to
enrol/acquire. Every pair that uses it gets score -inf (always rejected), so failures lower TAR instead
of being silently dropped; their number is reported. Why the gate applies here too: a threshold's promise is about
the faces that decide live, and the live pipeline never embeds a gated face.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from engines.analyzer import largest_face
from engines.face_model import exposure_problem
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
    """Embedding of the largest face of each photo, computed once; None when no face / unreadable / gated.

    ``max_clipped``: the config's ``quality.max_clipped``; a photo whose face is beyond it is a failure with the
    gate's reason (None: no exposure gate, for comparing models rather than checking a promise)."""

    def __init__(self, analyzer, root: Path, max_clipped: float | None = None) -> None:
        self.analyzer, self.root, self.max_clipped = analyzer, Path(root), max_clipped
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
            face = largest_face(faces) if faces else None
            if face is not None and self.max_clipped is not None and face.crop is not None:
                why = exposure_problem(face.crop, self.max_clipped)
                if why is not None:
                    face, self.failures[str(path)] = None, why
            self.cache[path] = None if face is None else face.embedding
        return self.cache[path]


def pair_scores(cache: EmbeddingCache, pairs: list[Pair], progress: bool = True, score=None) -> np.ndarray:
    """Similarity of each pair: cosine of the L2-normalised embeddings unless ``score(a, b)`` is given
    (tools/compare_peers.py scores face_recognition by its own negated Euclidean distance)."""
    scores = np.empty(len(pairs))
    for k, p in enumerate(tqdm(pairs, desc="pairs", unit="pair", disable=not progress)):
        a, b = cache.get(cache.path(*p.a)), cache.get(cache.path(*p.b))
        scores[k] = FAIL_SCORE if a is None or b is None else (float(a @ b) if score is None else score(a, b))
    return scores


# ------------------------------------------------------------------ a labelled folder, every photo embedded once
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def family_of(identity: str) -> str:
    """The data family of an identity folder: its name up to the first ``_`` (``es_Tina_Fey`` -> ``es``).

    Why families matter: photos gathered from several sources may hold the same person under two names, so a
    "different person" pair across families may not be one (the shared dev data's MANIFEST says so).
    """
    return identity.split("_", 1)[0]


def _photo_key(p: Path) -> tuple[int, str]:
    return len(p.stem), p.stem  # 2.jpg before 10.jpg


@dataclass
class LabelledPhotos:
    """Every photo of ``ROOT/<identity>/<i>.jpg`` with a detectable face, embedded once.

    Why one object: calibration, its holdout check and the identity-split benchmark draw millions of pairs and
    many identity subsets from the same photos; each photo is run through the models once and the rest is
    matrix algebra on ``emb``.
    """

    root: Path
    identities: list[str]  # sorted; index = identity id
    paths: list[Path]  # photos with a face, grouped by identity, in photo order
    ident: np.ndarray  # identity id of each photo
    emb: np.ndarray  # (photos, d) float32, L2-normalised
    failed: dict[str, str]  # photo -> why it has no embedding (no face, unreadable)

    @property
    def families(self) -> np.ndarray:
        """Family of each identity (see :func:`family_of`)."""
        return np.array([family_of(n) for n in self.identities])

    def photos_of(self, identity: int) -> np.ndarray:
        return np.flatnonzero(self.ident == identity)


def list_identities(root: Path, only: str | None = None) -> dict[str, list[Path]]:
    """``{identity: photos}`` of a labelled folder; an error (one line) when it holds fewer than 2 identities
    with photos, since no impostor pair (and so no false-accept rate) can come from it."""
    root = Path(root)
    which = f" starting with {only!r}" if only else ""
    try:
        dirs = sorted(d for d in root.iterdir() if d.is_dir() and (only is None or d.name.startswith(only)))
    except OSError as exc:
        raise EvalError(f"--root {root}: cannot list ({exc.strerror})") from None
    photos = {d.name: sorted((p for p in d.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file()),
                             key=_photo_key) for d in dirs}
    photos = {n: ps for n, ps in photos.items() if ps}
    if len(photos) < 2:
        raise EvalError(f"--root {root}: needs photos of at least 2 identities{which} (ROOT/<name>/<i>.jpg), found "
                        f"{len(photos)}; with fewer there is no different-person pair to measure false accepts on")
    return photos


def embed_labelled(cache: EmbeddingCache, root: Path, only: str | None = None, progress: bool = True) -> LabelledPhotos:
    """Embed every photo of a labelled folder (through ``cache``, so a photo already seen is not run again)."""
    photos = list_identities(root, only)
    names, paths, ident, embs = sorted(photos), [], [], []
    for p in tqdm([p for n in names for p in photos[n]], desc="embedding", unit="img", disable=not progress):
        e = cache.get(p)
        if e is not None:
            paths.append(p)
            ident.append(names.index(p.parent.name))
            embs.append(np.asarray(e, np.float32) / max(float(np.linalg.norm(e)), 1e-12))
    failed = {k: v for k, v in cache.failures.items() if Path(k).parent.name in photos}
    ident_arr = np.array(ident, dtype=np.int64)
    if len(np.unique(ident_arr)) < 2:
        raise EvalError(f"--root {root}: a face was found in the photos of {len(np.unique(ident_arr))} of "
                        f"{len(names)} identities; impostor (different-person) pairs need at least 2")
    return LabelledPhotos(Path(root), names, paths, ident_arr, np.stack(embs), failed)


def _eligible_identity_pairs(ls: LabelledPhotos, identities: np.ndarray, within_families: bool) -> list[tuple[int, int]]:
    fam = ls.families
    ids = sorted(int(i) for i in identities)
    return [(a, b) for x, a in enumerate(ids) for b in ids[x + 1:] if not within_families or fam[a] == fam[b]]


def impostor_scores(ls: LabelledPhotos, identities: np.ndarray | None = None, *, within_families: bool = False,
                    max_pairs: int = 5_000_000, seed: int = 0) -> tuple[np.ndarray, int]:
    """Cosine of every cross-identity photo pair among ``identities`` (all when None); only pairs within one
    family when ``within_families``. Returns (scores, pairs available).

    Every pair, because the tail that sets a threshold for FAR 1e-3 is a few dozen pairs: a pairs file's
    1,500 impostors leave one pair deciding it. When there are more than ``max_pairs``, a uniform sample of
    that many (seeded, so a calibration can be repeated).
    """
    ids = np.arange(len(ls.identities)) if identities is None else np.asarray(identities)
    pairs = _eligible_identity_pairs(ls, ids, within_families)
    idx = {int(i): ls.photos_of(int(i)) for i in ids}
    sizes = np.array([len(idx[a]) * len(idx[b]) for a, b in pairs], dtype=np.int64)
    total = int(sizes.sum())
    if total == 0:
        return np.empty(0), 0
    take = sizes if total <= max_pairs else np.random.default_rng(seed).multinomial(max_pairs, sizes / total)
    rng = np.random.default_rng(seed + 1)
    out = []
    for (a, b), size, t in zip(pairs, sizes, take):
        if t == 0:
            continue
        ea, eb = ls.emb[idx[a]], ls.emb[idx[b]]
        if t == size:
            out.append((ea @ eb.T).ravel())
        else:  # sampled: with replacement inside a block, which is uniform enough at these sizes
            i, j = rng.integers(0, len(ea), int(t)), rng.integers(0, len(eb), int(t))
            out.append(np.einsum("ij,ij->i", ea[i], eb[j]))
    return np.concatenate(out).astype(np.float64), total


def genuine_scores(ls: LabelledPhotos, identities: np.ndarray | None = None, max_pairs: int = 5_000_000,
                   seed: int = 0) -> np.ndarray:
    """Cosine of every same-identity photo pair among ``identities`` (a seeded sample above ``max_pairs``)."""
    ids = np.arange(len(ls.identities)) if identities is None else np.asarray(identities)
    out = []
    for i in ids:
        e = ls.emb[ls.photos_of(int(i))]
        iu = np.triu_indices(len(e), 1)
        out.append((e @ e.T)[iu])
    s = np.concatenate(out).astype(np.float64) if out else np.empty(0)
    if len(s) > max_pairs:
        s = np.random.default_rng(seed).choice(s, max_pairs, replace=False)
    return s
