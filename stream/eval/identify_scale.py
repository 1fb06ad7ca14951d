"""Open-set 1:N at scale: FNIR at FPIR for galleries of 10 to 10,000 identities, from labelled dev photos.

Pure numpy on :class:`~stream.eval.photos.LabelledPhotos` (no models), so every number reruns in seconds and the
arithmetic is checked on hand-built cases (tests/test_identify_scale.py).

Why not :class:`stream.eval.identify.OpenSet`: that one is exact over every gallery of N identities of one family,
and the largest family holds 20. A watchlist of 1,000 or 10,000 people cannot be drawn from 70, so the gallery is
filled with *distractors*, and the question becomes what they are worth. The protocol, and why:

* Roles rotate over identity folds (seeded; each family dealt round-robin, so every fold mixes families). In fold
  f the identities of f are the *strangers*: their photos are the non-mated probes, so over the folds every dev
  photo is a non-mated probe exactly once (3,339: enough for an interval at FPIR 1e-3). ``enrolled`` other
  identities (default: the smallest N) are enrolled with their first ``enroll`` photos and probed with the rest
  (mated probes), taken in turn from one seeded cycle so each is enrolled about as often. The remaining
  identities are the fold's *distractor identities*.
* Scores as the gallery scores them (``stream.store.gallery.Gallery.search``): each identity by its best sample.
  A non-mated probe is a false positive at threshold t when the gallery's top score is >= t. A mated probe is a
  hit when its own identity scores >= t and strictly above every other gallery identity (a tie is a miss);
  FNIR = 1 - hits / mated probes.
* Real distractors: every photo of the distractor identities, cut into pseudo-identities of ``enroll`` photos of
  one person (photo order shuffled, seeded). Why ``enroll`` photos and not one photo each: the top score is a max
  over the gallery's *samples*, so one-photo pseudo-identities would give a gallery of N a third of the samples a
  watchlist of N people enrolled with 3 photos has, and an optimistic FPIR; beyond that the grouping changes
  nothing (the union of samples is the same). What real distractors cannot be is N different people: a fold has
  ~58 distractor persons, so its ~800 pseudo-identities are ~14 photo sets of each, holding every lighting of every
  Yale subject (the Yale photos are what sets the real top-score tail).
* Synthetic distractors, only where the real ones run out (a gallery holds every real one first), fitted to the
  fold's distractor identities only, never to its strangers or enrolled (a stranger's own face must not leak into
  the gallery). :func:`swap_distractors` (default): a real photo's residual (the photo minus its person's mean:
  pose, lighting, expression) put on a new person's centre; :func:`gaussian_distractors`: a two-level Gaussian.
  Both keep each family's look and the family's between-person covariance.
* :class:`SyntheticCheck`: the non-mated top-score curve (FPIR vs threshold) with synthetic distractors must lie
  inside the exact 95 % interval of the real curve at every threshold checked, at the largest N every fold fills
  with real distractors ("every photo") and with one enrolment set per real distractor person ("per person",
  like for like). When it does not, rows with synthetic distractors say ``synthetic_ok`` False: a lower bound
  (the real distractors are all in), not a measurement, and the tool's exit status ignores them.
* The threshold follows N, two ways per N and target FPIR. ``measured``: set on the non-mated probes' top scores
  (FRVT's FNIR at FPIR; in-sample). ``promise``: what the calibration rule sets, the lowest 4-digit threshold whose
  FAR upper bound on every cross-identity photo pair is <= 1 - (1 - FPIR)^(1/C) (plus ``margin``), C the
  comparisons a probe makes: ``count="samples"`` (default) C = N * enroll, since the top score is a max over every
  enrolled photo; ``count="identities"`` C = N, the formula of ``facewatch calibrate --gallery-size``, which
  assumes one comparison per identity. Where the pairs cannot support that FAR (FPIR 1e-2 at N 10,000 needs FAR
  3e-7: ~9 million pairs) the row says so instead of promising.
* Galleries and impostor pairs span families: a gallery of 10,000 cannot stay in one. Two identities of different
  families that are one person (:func:`find_aliases`: es_Barack_Obama and fr_obama) are merged first, else a
  stranger matching its own alias would be counted as a false positive. Any alias the rule misses can only add
  false positives or beat the right identity: pessimistic, never optimistic.
* Seeded and deterministic; galleries are nested (N grows by adding distractors), so at a fixed threshold FPIR can
  only grow with N.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from stream.eval.photos import LabelledPhotos, impostor_scores
from stream.eval.rates import (CONFIDENCE, TooFewTrials, binomial_interval, bounded_threshold,
                               per_comparison_far_for_gallery, threshold_at_false_rate, verdict)

#: FPIR levels the synthetic-vs-real check compares the curves at (the thresholds where the real FPIR is these).
CHECK_LEVELS = (0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001)

#: (ls, distractor identity ids, count, samples per identity, rng) -> (count, samples, d) unit vectors
Generator = Callable[[LabelledPhotos, np.ndarray, int, int, np.random.Generator], np.ndarray]


# ------------------------------------------------------------------ synthetic distractors
def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def _sqrt_cov(dev: np.ndarray) -> np.ndarray:
    """A with A @ A.T = the second moment of ``dev`` about 0 (rows are deviations from a known mean)."""
    if len(dev) < 2:
        return np.zeros((dev.shape[1], 1))
    val, vec = np.linalg.eigh(dev.T.astype(np.float64) @ dev.astype(np.float64) / (len(dev) - 1))
    keep = val > max(float(val.max()), 0.0) * 1e-9
    if not keep.any() or val.max() <= 0:
        return np.zeros((dev.shape[1], 1))
    return vec[:, keep] * np.sqrt(val[keep])


@dataclass
class _Fit:
    """What both generators fit: per family its mean, its identities' centres and the between-person spread."""

    ids: list[int]
    family: dict[int, str]
    centre: dict[int, np.ndarray]
    mean: dict[str, np.ndarray]
    between: dict[str, np.ndarray]  # A with A A^T = the family's between-person covariance (pooled if < 3 persons)


def _fit(ls: LabelledPhotos, identities: np.ndarray, samples: int) -> _Fit:
    ids = [int(i) for i in identities if len(ls.photos_of(int(i))) >= samples]
    if not ids:
        raise ValueError(f"synthetic distractors need a real distractor identity with >= {samples} photos to be fitted to")
    fam = {i: str(ls.families[i]) for i in ids}
    centre = {i: ls.emb[ls.photos_of(i)].mean(0) for i in ids}
    mean, dev = {}, {}
    for f in sorted(set(fam.values())):
        members = [i for i in ids if fam[i] == f]
        mean[f] = np.mean([centre[i] for i in members], axis=0)
        dev[f] = np.array([centre[i] - mean[f] for i in members])
    pooled = [d for d in dev.values() if len(d) > 1]
    pooled_b = _sqrt_cov(np.concatenate(pooled)) if pooled else np.zeros((ls.emb.shape[1], 1))
    between = {f: _sqrt_cov(d) if len(d) >= 3 else pooled_b for f, d in dev.items()}
    return _Fit(ids, fam, centre, mean, between)


def _donors(ls: LabelledPhotos, fit: _Fit, count: int, rng: np.random.Generator) -> np.ndarray:
    """Real distractor identities drawn in proportion to their photos: synthetic families and persons weighted
    as the real distractor photos are."""
    w = np.array([len(ls.photos_of(i)) for i in fit.ids], float)
    return np.asarray(fit.ids)[rng.choice(len(fit.ids), size=count, p=w / w.sum())]


def _new_centres(fit: _Fit, donors: np.ndarray, rng: np.random.Generator, bandwidth: float) -> np.ndarray:
    """A new person's centre per donor, in the donor's family: a smoothed bootstrap of the family's real centres,
    mean + sqrt(1 - h^2) (a real centre - mean) + h * N(0, between covariance); the covariance is kept for any h
    (h = 1: a Gaussian; h -> 0: copies of real people)."""
    d = next(iter(fit.mean.values())).shape[0]
    out = np.empty((len(donors), d))
    for f in sorted(set(fit.family[int(i)] for i in donors)):
        sel = np.flatnonzero([fit.family[int(i)] == f for i in donors])
        members = [i for i in fit.ids if fit.family[i] == f]
        real = np.stack([fit.centre[members[k]] for k in rng.integers(0, len(members), len(sel))]) - fit.mean[f]
        b = fit.between[f]
        out[sel] = (fit.mean[f] + math.sqrt(1 - bandwidth ** 2) * real
                    + bandwidth * rng.standard_normal((len(sel), b.shape[1])) @ b.T)
    return out


def swap_distractors(ls: LabelledPhotos, identities: np.ndarray, count: int, samples: int,
                     rng: np.random.Generator, bandwidth: float = 0.5) -> np.ndarray:
    """``count`` synthetic people of ``samples`` unit vectors, each a real person's photos moved onto a new centre.

    Each takes a donor among ``identities`` (in proportion to their photos) and ``samples`` of its photos, keeps
    each photo's residual from the donor's mean (pose, lighting, expression: real, not Gaussian) and puts it on a
    new centre of the donor's family (:func:`_new_centres`, bandwidth 0.5: halfway between a copy of a real person
    and a Gaussian draw, fixed, not tuned to the check). Why: face embeddings are a person's centre plus how the
    photo was taken, and only the first must be new for a new person. What it cannot copy: photos whose
    embedding carries no identity (Yale's darkest lightings collapse to one point for everyone); moved onto a new
    centre they gain one, so their cross-person matches, the real top-score tail, are lost: the check shows it.
    Returns (count, samples, d) float32."""
    fit = _fit(ls, identities, samples)
    donors = _donors(ls, fit, count, rng)
    centres = _new_centres(fit, donors, rng, bandwidth)
    out = np.empty((count, samples, ls.emb.shape[1]), np.float32)
    for i in sorted(set(int(x) for x in donors)):
        sel = np.flatnonzero(donors == i)
        photos = ls.photos_of(i)
        pick = np.argsort(rng.random((len(sel), len(photos))), axis=1)[:, :samples]  # distinct photos per person
        resid = ls.emb[photos[pick]] - fit.centre[i]
        out[sel] = _unit(resid + centres[sel][:, None, :])
    return out


def gaussian_distractors(ls: LabelledPhotos, identities: np.ndarray, count: int, samples: int,
                         rng: np.random.Generator) -> np.ndarray:
    """``count`` synthetic people of ``samples`` unit vectors from a two-level Gaussian fitted to ``identities``:
    a centre drawn from the family's between-person Gaussian, each sample that plus a draw from the family's
    within-person Gaussian, L2-normalised (the model PLDA scoring assumes). Kept as the plain alternative: the
    check shows its top scores fall far short of real ones (real photo variation is not Gaussian)."""
    fit = _fit(ls, identities, samples)
    donors = _donors(ls, fit, count, rng)
    centres = _new_centres(fit, donors, rng, 1.0)
    out = np.empty((count, samples, ls.emb.shape[1]), np.float32)
    for f in sorted(set(fit.family[int(i)] for i in donors)):
        sel = np.flatnonzero([fit.family[int(i)] == f for i in donors])
        members = [i for i in fit.ids if fit.family[i] == f]
        resid = np.concatenate([ls.emb[ls.photos_of(i)] - fit.centre[i] for i in members])
        w = _sqrt_cov(resid)
        out[sel] = _unit(centres[sel][:, None, :] + rng.standard_normal((len(sel), samples, w.shape[1])) @ w.T)
    return out


GENERATORS: dict[str, Generator] = {"swap": swap_distractors, "gaussian": gaussian_distractors}


# ------------------------------------------------------------------ aliases: one person under two names
@dataclass(frozen=True)
class Alias:
    """Two identities of different families that hold one person: ``alias`` is merged into ``identity``."""

    identity: str
    alias: str
    median_score: float  # median score over every photo pair of the two
    own_median: float  # the lower of the two identities' own same-identity medians


def find_aliases(ls: LabelledPhotos) -> list[Alias]:
    """Cross-family identity pairs whose photos score with each other (median over every photo pair) at least as
    high as the photos of one of them score among themselves: one person under two names, which the MANIFEST warns
    of (es_Barack_Obama and fr_obama: median 0.927 against own 0.915; the next cross-family pair is 0.817). Pairs
    within one family are never merged: their labels are trusted to be two people."""
    fam = ls.families
    ids = [i for i in range(len(ls.identities)) if len(ls.photos_of(i))]
    own = {}
    for i in ids:
        e = ls.emb[ls.photos_of(i)]
        own[i] = float(np.median((e @ e.T)[np.triu_indices(len(e), 1)])) if len(e) > 1 else 1.0
    out = []
    for x, i in enumerate(ids):
        for j in ids[x + 1:]:
            if fam[i] == fam[j]:
                continue
            med = float(np.median(ls.emb[ls.photos_of(i)] @ ls.emb[ls.photos_of(j)].T))
            if med >= min(own[i], own[j]):
                a, b = sorted((i, j), key=lambda k: (-len(ls.photos_of(k)), k))
                out.append(Alias(ls.identities[a], ls.identities[b], med, min(own[i], own[j])))
    return out


def merge_aliases(ls: LabelledPhotos, aliases: list[Alias]) -> LabelledPhotos:
    """``ls`` with each alias's photos relabelled as its identity (the alias keeps its name, with no photos).

    Chains are followed (one person under three names, es/fr/it, is one identity: the one with the most photos),
    whatever order the aliases come in."""
    if not aliases:
        return ls
    index = {n: k for k, n in enumerate(ls.identities)}
    root = list(range(len(ls.identities)))

    def find(k: int) -> int:
        while root[k] != k:
            k = root[k]
        return k

    for a in aliases:
        x, y = find(index[a.identity]), find(index[a.alias])
        if x != y:
            keep, drop = sorted((x, y), key=lambda k: (-len(ls.photos_of(k)), k))
            root[drop] = keep
    ident = np.array([find(int(k)) for k in ls.ident], dtype=ls.ident.dtype)
    order = np.argsort(ident, kind="stable")  # photos stay grouped by identity, in photo order
    return LabelledPhotos(ls.root, ls.identities, [ls.paths[k] for k in order], ident[order], ls.emb[order], ls.failed)


def merge(sets: list[LabelledPhotos]) -> LabelledPhotos:
    """Several labelled folders embedded by the same model as one (a name in two folders is prefixed by its
    folder's parent, so it stays two identities; :func:`find_aliases` decides whether they are one person)."""
    if not sets:
        raise ValueError("no labelled folder to merge")
    dims = {s.emb.shape[1] for s in sets}
    if len(dims) != 1:
        raise ValueError(f"the folders were embedded with different dimensions {sorted(dims)}")
    seen = [n for s in sets for n in s.identities]
    dup = {n for n in seen if seen.count(n) > 1}
    names, paths, ident, emb, failed = [], [], [], [], {}
    for s in sets:
        base = len(names)
        names += [f"{s.root.parent.name}/{n}" if n in dup else n for n in s.identities]
        paths += list(s.paths)
        ident.append(s.ident + base)
        emb.append(s.emb)
        failed.update(s.failed)
    return LabelledPhotos(sets[0].root, names, paths, np.concatenate(ident), np.concatenate(emb), failed)


# ------------------------------------------------------------------ rows
@dataclass(frozen=True)
class Rate:
    """A false rate at a threshold with its exact interval (``score >= threshold`` accepts)."""

    threshold: float
    false_positives: int
    trials: int
    rate: float
    lower: float
    upper: float


@dataclass(frozen=True)
class ScaleRow:
    """One gallery size N and target FPIR: the threshold set on the non-mated probes (``measured``) and the one
    the calibration rule promises (``promise``), what each gives, and where the distractors came from."""

    gallery_size: int
    target_fpir: float
    mated_probes: int
    nonmated_probes: int
    real_distractors: int  # pseudo-identities, summed over the folds
    synthetic_distractors: int  # identities, summed over the folds
    synthetic_ok: bool  # no synthetic distractor here, or the synthetic-vs-real check matched
    measured: Rate | None  # None: too few non-mated probes for the target
    measured_contains_target: bool | None  # lower <= target <= upper
    fnir_measured: float | None
    per_comparison_far: float
    promise: Rate | None  # None: the impostor pairs cannot support per_comparison_far
    promise_verdict: str  # kept / consistent / broken (rates.verdict against target_fpir) / not supported
    fnir_promise: float | None
    fpir_at_smallest_n_threshold: Rate | None = None  # at the smallest N's measured threshold: not following N
    note: str = ""


@dataclass(frozen=True)
class CheckRow:
    """Synthetic against real distractors at one threshold (where the real FPIR is ``level``)."""

    kind: str  # "every photo" (all real distractor photos) or "per person" (one enrolment set per real person)
    gallery_size: int
    level: float
    threshold: float
    real: Rate
    synthetic_fpir: float
    synthetic_false_positives: int
    within: bool  # the synthetic FPIR lies inside the real one's exact interval


@dataclass
class SyntheticCheck:
    generator: str
    rows: list[CheckRow]
    note: str = ""  # why there are no rows

    @property
    def matches(self) -> bool:
        return bool(self.rows) and all(r.within for r in self.rows)


@dataclass
class ScaleReport:
    identities: int
    photos: int
    folds: int
    enroll: int
    enrolled_per_fold: int
    impostor_pairs: int
    count: str
    margin: float
    seed: int
    aliases: list[Alias]
    rows: list[ScaleRow]
    check: SyntheticCheck | None  # None: no synthetic distractor was needed or allowed
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["check_matches"] = self.check.matches if self.check else None
        return d

    @property
    def broken(self) -> list[ScaleRow]:
        """Rows whose measured FPIR interval lies entirely above the promise (trusted distractors only)."""
        return [r for r in self.rows if r.synthetic_ok and r.promise_verdict == "broken"]


# ------------------------------------------------------------------ scores
def _rate(tops: np.ndarray, threshold: float, confidence: float = CONFIDENCE) -> Rate:
    # float64: against float32 scores NumPy casts a Python float threshold to float32, and the threshold just
    # above a score (threshold_at_false_rate's nextafter, in float64) rounds back onto it and accepts it
    tops = np.asarray(tops, dtype=np.float64)
    k = int(np.count_nonzero(tops >= threshold))
    lo, hi = binomial_interval(k, len(tops), confidence)
    return Rate(float(threshold), k, len(tops), k / len(tops) if len(tops) else 0.0, lo, hi)


def fnir_fpir_at(own: np.ndarray, wrong: np.ndarray, nonmated_top: np.ndarray, threshold: float,
                 confidence: float = CONFIDENCE) -> tuple[float | None, Rate]:
    """FNIR, and FPIR with its exact interval, at ``threshold`` from per-probe scores: a mated probe is a hit when
    its own identity scores >= threshold and strictly above the best wrong identity (``wrong``); a non-mated
    probe is a false positive when the gallery's top score is >= threshold."""
    own, wrong = np.asarray(own, dtype=np.float64), np.asarray(wrong, dtype=np.float64)  # float64: see _rate
    fnir = float(1.0 - np.mean((own >= threshold) & (own > wrong))) if len(own) else None
    return fnir, _rate(np.asarray(nonmated_top), threshold, confidence)


def synthetic_check(tops_real: np.ndarray, tops_synth: np.ndarray, gallery_size: int, kind: str = "every photo",
                    levels=CHECK_LEVELS, confidence: float = CONFIDENCE) -> list[CheckRow]:
    """The real and synthetic non-mated top-score curves compared at the thresholds where the real FPIR is each
    ``level`` the probes can resolve (n * level >= 1): is the synthetic FPIR inside the real one's interval?"""
    tops_real, tops_synth = np.asarray(tops_real, dtype=np.float64), np.asarray(tops_synth, dtype=np.float64)
    rows = []
    for lv in levels:
        if len(tops_real) * lv < 1:
            continue
        thr, _ = threshold_at_false_rate(tops_real, lv)
        real = _rate(tops_real, thr, confidence)
        k = int(np.count_nonzero(tops_synth >= thr))
        syn = k / len(tops_synth)
        rows.append(CheckRow(kind, gallery_size, lv, float(thr), real, syn, k, real.lower <= syn <= real.upper))
    return rows


def _best_per_identity(q: np.ndarray, samples: np.ndarray, block: int = 2048) -> np.ndarray:
    """(probes, identities): each identity's best sample score; ``samples`` is (identities, k, d)."""
    out = np.empty((len(q), len(samples)), np.float32)
    for s in range(0, len(samples), block):
        blk = samples[s:s + block]
        sims = q @ blk.reshape(-1, blk.shape[-1]).T
        out[:, s:s + len(blk)] = sims.reshape(len(q), len(blk), blk.shape[1]).max(axis=2)
    return out


def _prefix_max(q: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """(probes, n+1): column r is the best score over the first r identities of ``samples`` (-inf for none)."""
    out = np.full((len(q), len(samples) + 1), -np.inf, np.float32)
    if len(samples) and len(q):
        out[:, 1:] = np.maximum.accumulate(_best_per_identity(q, samples), axis=1)
    return out


@dataclass
class _Fold:
    """One fold's probes scored against its enrolled identities and every distractor prefix."""

    nonmated_top_e: np.ndarray  # (nonmated,) best score over the enrolled identities
    mated_own: np.ndarray  # (mated,) own identity's score
    mated_wrong_e: np.ndarray  # (mated,) best other enrolled identity
    real: tuple[np.ndarray, np.ndarray]  # (nonmated | mated, R+1) max over the first r real pseudo-identities
    persons: tuple[np.ndarray, np.ndarray]  # the same over one enrolment set per real distractor person
    synth: tuple[np.ndarray, np.ndarray] | None  # the same over the synthetic distractors

    @property
    def n_real(self) -> int:
        return self.real[0].shape[1] - 1

    @property
    def n_persons(self) -> int:
        return self.persons[0].shape[1] - 1

    def tops(self, real: int, synthetic: int = 0, persons: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(non-mated top, mated best wrong) for the enrolled + the first ``real`` real distractors (pseudo-
        identities, or persons) + the first ``synthetic`` synthetic ones."""
        src = self.persons if persons else self.real
        n_top = np.maximum(self.nonmated_top_e, src[0][:, real])
        wrong = np.maximum(self.mated_wrong_e, src[1][:, real])
        if synthetic:
            have = 0 if self.synth is None else self.synth[0].shape[1] - 1
            if have < synthetic:
                raise ValueError(f"a fold needs {synthetic} synthetic distractors and has {have}")
            n_top = np.maximum(n_top, self.synth[0][:, synthetic])
            wrong = np.maximum(wrong, self.synth[1][:, synthetic])
        return n_top, wrong


def _folds(ls: LabelledPhotos, folds: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Identities (with photos) dealt into ``folds``, family by family, in a seeded order."""
    ids = [i for i in range(len(ls.identities)) if len(ls.photos_of(i))]
    fam = ls.families
    out: list[list[int]] = [[] for _ in range(folds)]
    k = 0
    for f in sorted({str(fam[i]) for i in ids}):
        for i in rng.permutation([i for i in ids if fam[i] == f]):
            out[k % folds].append(int(i))
            k += 1
    return [np.array(sorted(f), dtype=np.int64) for f in out]


def _chunks(ls: LabelledPhotos, identities: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Every photo of ``identities`` as pseudo-identities of ``k`` photos of one person (whole sets only), in a
    seeded order; and the first set of each person (one enrolment per person). Each (n, k, d)."""
    groups, firsts = [], []
    for i in identities:
        ph = rng.permutation(ls.photos_of(int(i)))
        sets = [ph[s:s + k] for s in range(0, len(ph) - k + 1, k)]
        groups += sets
        firsts += sets[:1]
    empty = np.zeros((0, k, ls.emb.shape[1]), np.float32)
    if not groups:
        return empty, empty
    order = rng.permutation(len(groups))
    return (np.stack([ls.emb[groups[g]] for g in order]).astype(np.float32),
            np.stack([ls.emb[g] for g in firsts]).astype(np.float32))


def _real_sets(ls: LabelledPhotos, identities, k: int) -> int:
    return sum(len(ls.photos_of(int(i))) // k for i in identities)


def _build_fold(ls: LabelledPhotos, strangers: np.ndarray, enrolled: np.ndarray, enroll: int, synthetic_needed: int,
                generator: Generator | None, rng: np.random.Generator) -> _Fold:
    distractors = np.array([i for i in range(len(ls.identities)) if len(ls.photos_of(i))
                            and i not in set(strangers.tolist()) | set(enrolled.tolist())], dtype=np.int64)
    nonmated = np.concatenate([ls.photos_of(int(i)) for i in strangers])
    enr = [ls.photos_of(int(i))[:enroll] for i in enrolled]
    mated = [(c, p) for c, i in enumerate(enrolled) for p in ls.photos_of(int(i))[enroll:]]
    d = ls.emb.shape[1]
    mq = ls.emb[[p for _, p in mated]] if mated else np.zeros((0, d), np.float32)
    owner = np.array([c for c, _ in mated], dtype=np.int64)
    nq = ls.emb[nonmated]
    starts = np.cumsum([0] + [len(e) for e in enr[:-1]])
    samples_e = ls.emb[np.concatenate(enr)]
    n_best = np.maximum.reduceat(nq @ samples_e.T, starts, axis=1)
    wrong = np.maximum.reduceat(mq @ samples_e.T, starts, axis=1) if len(mq) else np.zeros((0, len(enr)), np.float32)
    own = wrong[np.arange(len(mq)), owner].copy()
    wrong[np.arange(len(mq)), owner] = -np.inf
    real, persons = _chunks(ls, distractors, enroll, rng)
    synth = None
    if synthetic_needed > 0:
        if generator is None:
            raise ValueError("synthetic distractors are needed but not allowed")
        syn = np.asarray(generator(ls, distractors, synthetic_needed, enroll, rng), dtype=np.float32)
        if syn.shape != (synthetic_needed, enroll, d):
            raise ValueError(f"the synthetic distractor generator returned shape {syn.shape}, "
                             f"expected {(synthetic_needed, enroll, d)}")
        synth = (_prefix_max(nq, syn), _prefix_max(mq, syn))
    return _Fold(n_best.max(axis=1), own, wrong.max(axis=1) if len(enr) > 1 else np.full(len(mq), -np.inf, np.float32),
                 (_prefix_max(nq, real), _prefix_max(mq, real)), (_prefix_max(nq, persons), _prefix_max(mq, persons)),
                 synth)


def _validate(ls: LabelledPhotos, sizes, fpirs, enroll: int, folds: int, enrolled: int | None,
              count: str) -> tuple[list[int], int]:
    sizes = [int(n) for n in sizes]
    if not sizes or any(n < 1 for n in sizes) or sorted(set(sizes)) != sizes:
        raise ValueError(f"gallery sizes must be increasing whole numbers >= 1, got {sizes}")
    if not fpirs or any(not 0 < f < 1 for f in fpirs):
        raise ValueError(f"target FPIRs must lie in (0, 1), got {list(fpirs)}")
    if enroll < 1:
        raise ValueError(f"enroll must be >= 1 photo per identity, got {enroll}")
    if count not in ("samples", "identities"):
        raise ValueError(f"count must be 'samples' or 'identities', got {count!r}")
    e = sizes[0] if enrolled is None else int(enrolled)
    if not 1 <= e <= sizes[0]:
        raise ValueError(f"enrolled identities per fold ({e}) must be between 1 and the smallest gallery ({sizes[0]})")
    have = sum(1 for i in range(len(ls.identities)) if len(ls.photos_of(i)))
    if not 2 <= folds <= have:
        raise ValueError(f"folds must be between 2 and the identities with photos ({have}), got {folds}")
    return sizes, e


def identify_at_scale(ls: LabelledPhotos, sizes=(10, 100, 1000, 10000), fpirs=(1e-2, 1e-3), *, enroll: int = 3,
                      folds: int = 10, enrolled: int | None = None, seed: int = 0,
                      synthetic: Generator | None = swap_distractors, count: str = "samples", margin: float = 0.0,
                      aliases: bool = True, max_pairs: int = 20_000_000,
                      confidence: float = CONFIDENCE) -> ScaleReport:
    """FNIR at FPIR for each gallery size in ``sizes`` and target in ``fpirs`` (protocol: module docstring).

    ``synthetic``: the generator of synthetic distractors; None allows real ones only, and a size that needs more
    is a :class:`ValueError` naming what the data holds. ``count``: how the promise counts a probe's comparisons
    ("samples": N * enroll; "identities": N). ``margin``: added to the promise threshold, as ``facewatch calibrate``
    adds its margin (0: the bare rule, the stricter test). ``aliases``: merge cross-family identities that are one
    person first (:func:`find_aliases`). Raises :class:`ValueError` on bad input.
    """
    sizes, n_enr = _validate(ls, sizes, fpirs, enroll, folds, enrolled, count)
    found = find_aliases(ls) if aliases else []
    ls = merge_aliases(ls, found)
    rng = np.random.default_rng(seed)
    parts = _folds(ls, folds, rng)
    eligible = [int(i) for i in rng.permutation(len(ls.identities)) if len(ls.photos_of(int(i))) > enroll]
    if len(eligible) < n_enr + 1:
        raise ValueError(f"{len(eligible)} identities have more than {enroll} photos; {n_enr} enrolled per fold need "
                         f"at least {n_enr + 1} (a fold's strangers cannot be enrolled)")
    fill = sizes[-1] - n_enr  # distractors the largest gallery needs
    roles, cursor = [], 0
    for f, strangers in enumerate(parts):
        free = sum(1 for i in eligible if i not in strangers)
        if free < n_enr:
            raise ValueError(f"fold {f}: {free} identities outside its strangers have more than {enroll} photos; "
                             f"{n_enr} enrolled per fold need that many (more folds, or a smaller first gallery)")
        chosen: list[int] = []
        while len(chosen) < n_enr:
            i = eligible[cursor % len(eligible)]
            cursor += 1
            if i not in strangers and i not in chosen:
                chosen.append(i)
        rest = [i for i in range(len(ls.identities)) if i not in strangers and i not in chosen]
        real_here = _real_sets(ls, rest, enroll)
        if synthetic is None and real_here < fill:
            raise ValueError(f"gallery size {sizes[-1]:,} needs {fill:,} distractors besides the {n_enr} enrolled; fold "
                             f"{f} has {real_here:,} real ones (sets of {enroll} photos of its {len(rest)} other "
                             "identities) and synthetic distractors are not allowed")
        roles.append((strangers, np.array(chosen, dtype=np.int64), real_here, len(rest)))
    # the check's N: the largest every fold fills with real distractors (every photo; one set per person)
    check_real = min(r[2] for r in roles)
    check_persons = min(sum(1 for i in range(len(ls.identities)) if i not in s and i not in e
                            and len(ls.photos_of(i)) >= enroll) for s, e, _, _ in roles)
    needs = [max(fill - real_here, 0) for _, _, real_here, _ in roles]
    checking = synthetic is not None and any(needs)
    fold_data = []
    for k, (s, e, real_here, _) in enumerate(roles):
        want = max(needs[k], check_real, check_persons) if checking else 0
        fold_data.append(_build_fold(ls, s, e, enroll, want, synthetic, np.random.default_rng([seed, 1 + k])))
    check = None
    if checking:
        name = getattr(synthetic, "__name__", type(synthetic).__name__)
        rows: list[CheckRow] = []
        for kind, n_real, persons in (("every photo", check_real, False), ("per person", check_persons, True)):
            if n_real < 1:
                continue
            real = np.concatenate([fd.tops(n_real, persons=persons)[0] for fd in fold_data])
            syn = np.concatenate([fd.tops(0, n_real)[0] for fd in fold_data])
            rows += synthetic_check(real, syn, n_enr + n_real, kind, confidence=confidence)
        check = SyntheticCheck(name, rows, "" if rows else "no fold has a real distractor to compare with: unchecked")
    imp, _available = impostor_scores(ls, within_families=False, max_pairs=max_pairs, seed=seed)
    own = np.concatenate([fd.mated_own for fd in fold_data])
    out_rows, first_thr = [], {}
    for n in sizes:
        per = []
        r_used = s_used = 0
        for fd in fold_data:
            r = min(n - n_enr, fd.n_real)
            per.append(fd.tops(r, n - n_enr - r))
            r_used, s_used = r_used + r, s_used + n - n_enr - r
        n_top = np.concatenate([p[0] for p in per])
        wrong = np.concatenate([p[1] for p in per])
        ok = s_used == 0 or (check is not None and check.matches)
        for target in fpirs:
            note = []
            measured = contains = fnir_m = None
            if len(n_top) * target >= 1:
                thr, _ = threshold_at_false_rate(n_top, target)
                fnir_m, measured = fnir_fpir_at(own, wrong, n_top, thr, confidence)
                contains = measured.lower <= target <= measured.upper
                first_thr.setdefault(target, thr)
            else:
                note.append(f"{len(n_top)} non-mated probes cannot measure FPIR {target:g}")
            far = per_comparison_far_for_gallery(target, n * (enroll if count == "samples" else 1))
            promise = fnir_p = None
            p_verdict = "not supported"
            try:
                b = bounded_threshold(imp, far, confidence=confidence, what="impostor pairs")
                fnir_p, promise = fnir_fpir_at(own, wrong, n_top, b.threshold + margin, confidence)
                p_verdict = verdict(promise.lower, promise.upper, target)
            except TooFewTrials as exc:
                note.append(f"no promise: {exc.trials:,} impostor pairs support FAR >= {exc.supportable:.2g}, "
                            f"this needs {far:.2g} ({exc.needed:,} pairs)")
            if s_used and not ok:
                note.append("synthetic distractors not shown to behave like real ones: a lower bound")
            at_first = _rate(n_top, first_thr[target], confidence) if target in first_thr else None
            out_rows.append(ScaleRow(n, target, len(own), len(n_top), r_used, s_used, ok, measured, contains, fnir_m,
                                     far, promise, p_verdict, fnir_p, at_first, "; ".join(note)))
    notes = [f"{len(parts)} identity folds: each fold's identities are the strangers (non-mated probes), {n_enr} others "
             f"are enrolled with {enroll} photos (the rest of theirs are mated probes), the rest are distractors",
             "galleries and impostor pairs span families" + (
                 "; merged as one person: " + ", ".join(f"{a.alias} -> {a.identity}" for a in found) if found else "")]
    return ScaleReport(sum(1 for i in range(len(ls.identities)) if len(ls.photos_of(i))), len(ls.paths), len(parts),
                       enroll, n_enr, int(len(imp)), count, margin, seed, found, out_rows, check, notes)


# ------------------------------------------------------------------ tables
def _pct(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{100 * x:.2f}%" if x >= 1e-3 or x == 0 else f"{100 * x:.3f}%"


def _iv(r: Rate | None) -> str:
    return "n/a" if r is None else f"{_pct(r.rate)} [{_pct(r.lower)}, {_pct(r.upper)}] ({r.false_positives}/{r.trials})"


def markdown(report: ScaleReport, title: str = "") -> list[str]:
    """The FNIR/FPIR table (one row per N and target) for the README."""
    first = report.rows[0].gallery_size if report.rows else 0
    lines = ([f"**{title}**", ""] if title else []) + [
        "| N | target FPIR | threshold set on non-mated | FPIR measured [95 %] | FNIR | promise threshold (FAR per "
        f"comparison) | FPIR at promise [95 %] | promise | FNIR at promise | FPIR at N={first}'s threshold | "
        "distractors real / synthetic |",
        "|---:|---:|---:|---|---:|---|---|---|---:|---|---|"]
    for r in report.rows:
        thr = f"{r.measured.threshold:.4f}" if r.measured else "n/a"
        pthr = (f"{r.promise.threshold:.4f} ({r.per_comparison_far:.1e})" if r.promise
                else f"not supported ({r.per_comparison_far:.1e})")
        syn = f"{r.synthetic_distractors:,}" + ("" if r.synthetic_ok else " (unchecked: lower bound)")
        lines.append(f"| {r.gallery_size:,} | {r.target_fpir:g} | {thr} | {_iv(r.measured)} | {_pct(r.fnir_measured)} "
                     f"| {pthr} | {_iv(r.promise)} | {r.promise_verdict} | {_pct(r.fnir_promise)} | "
                     f"{_iv(r.fpir_at_smallest_n_threshold)} | {r.real_distractors:,} / {syn} |")
    if report.rows:
        r0 = report.rows[0]
        lines += ["", f"{report.identities} identities, {report.photos} photos, {report.folds} folds, "
                  f"{report.enrolled_per_fold} enrolled per fold with {report.enroll} photos; {r0.mated_probes} mated and "
                  f"{r0.nonmated_probes} non-mated probes; promise: FAR bound on {report.impostor_pairs:,} impostor "
                  f"pairs, comparisons counted in {report.count}, margin {report.margin:g}; seed {report.seed}; "
                  "distractors summed over the folds."] + [f"{n}." for n in report.notes]
    return lines


def check_markdown(check: SyntheticCheck | None, title: str = "") -> list[str]:
    """The synthetic-vs-real table: FPIR with real distractors (and its interval) against synthetic ones."""
    head = f"**{title}** " if title else ""
    if check is None:
        return [f"{head}no synthetic distractor needed"]
    if not check.rows:
        return [f"{head}synthetic distractors ({check.generator}) UNCHECKED: {check.note}"]
    lines = [f"{head}synthetic ({check.generator}) vs real distractors: "
             + ("match" if check.matches else "DO NOT MATCH (rows with synthetic distractors are flagged)"), "",
             "| real distractors | N | real FPIR level | threshold | FPIR real [95 %] | FPIR synthetic | within |",
             "|---|---:|---:|---:|---|---|---|"]
    for r in check.rows:
        lines.append(f"| {r.kind} | {r.gallery_size:,} | {r.level:g} | {r.threshold:.4f} | {_iv(r.real)} | "
                     f"{_pct(r.synthetic_fpir)} ({r.synthetic_false_positives}/{r.real.trials}) | "
                     f"{'yes' if r.within else 'NO'} |")
    return lines
