"""Open-set 1:N evaluation through the real gallery (SQLite + HNSW): rank-1, FNIR at FPIR, FPIR vs N."""
from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stream.eval.photos import (EmbeddingCache, EvalError, LabelledPhotos, embed_labelled, impostor_scores,
                                list_identities, require_plotting)
from stream.eval.plots import figure
from stream.eval.rates import (CONFIDENCE, Bounded, RateAt, TooFewTrials, at_threshold, binomial_interval,
                               fnir_at_fpir, rate_at, round_up_above, supportable_rate, trials_needed)
from stream.store.gallery import Gallery, accepts


@dataclass
class IdentifyReport:
    identities: int
    enrolled_identities: int
    enroll_per_identity: int
    mated_probes: int
    nonmated_probes: int
    rank1: float
    fnir_at_fpir: list[RateAt]
    fpir_vs_n: list[dict] = field(default_factory=list)
    fixed_threshold: float = 0.0
    failed_images: int = 0
    at_threshold: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_identify(analyzer, root: Path, enroll: int = 3, fpirs=(1e-2, 1e-3), threshold: float = 0.9,
                      only: str | None = None, plot: Path | None = None, progress: bool = True, seed: int = 0,
                      workdir: Path | None = None, gallery_size: int = 10, far_claim: float | None = None,
                      within_families: bool = False, max_clipped: float | None = None) -> IdentifyReport:
    """Open-set 1:N through the real Gallery (SQLite + HNSW): every other identity (sorted) is enrolled with
    its first ``enroll`` photos; probes are the rest of their photos (mated) and all photos of the others
    (non-mated). FPIR at ``threshold`` is then measured on galleries of growing size N. ``at_threshold``: TPIR,
    FAR over every cross-identity photo pair and FPIR over every gallery of ``gallery_size`` identities
    (:class:`OpenSet`), next to the claim ``far_claim``. ``max_clipped``: the exposure gate photos must pass."""
    require_plotting(plot)
    cache = EmbeddingCache(analyzer, root, max_clipped)
    photos = list_identities(Path(root), only)
    names = sorted(photos)
    enrolled = [n for k, n in enumerate(names) if k % 2 == 0 and len(photos[n]) > enroll]
    others = [n for n in names if n not in enrolled]
    which = f" starting with {only!r}" if only else ""
    if not enrolled:
        raise EvalError(f"--root {root}: no identity{which} has more than --enroll {enroll} photos, so none can be "
                        "enrolled and still probed")
    if not others:
        raise EvalError(f"--root {root}: every identity{which} would be enrolled; none is left to probe as a stranger")
    all_paths = [p for n in names for p in photos[n]]
    for p in tqdm(all_paths, desc="embedding", unit="img", disable=not progress):
        cache.get(p)
    tmp = tempfile.TemporaryDirectory(dir=workdir)
    gal = Gallery(Path(tmp.name) / "g", dim=analyzer.embedder.dim)
    for n in enrolled:
        emb = [cache.get(p) for p in photos[n][:enroll]]
        emb = [e for e in emb if e is not None]
        if emb:
            gal.enroll(n, np.stack(emb))

    def probe(gallery, paths):
        embs = [cache.get(p) for p in paths]
        ok = [e for e in embs if e is not None]
        cands = gallery.search(np.stack(ok)) if ok else []
        it = iter(cands)
        return [next(it) if e is not None else None for e in embs]

    mated = [(n, p) for n in enrolled for p in photos[n][enroll:]]
    m_c = probe(gal, [p for _, p in mated])
    m_scores = np.array([c.score if c else -2.0 for c in m_c])
    m_correct = np.array([bool(c) and c.identity == n for c, (n, _) in zip(m_c, mated)])
    non = [p for n in others for p in photos[n]]
    n_scores = np.array([c.score if c else -2.0 for c in probe(gal, non)])
    report = IdentifyReport(
        identities=len(names), enrolled_identities=len(enrolled), enroll_per_identity=enroll,
        mated_probes=len(mated), nonmated_probes=len(non), rank1=float(m_correct.mean()) if len(mated) else 0.0,
        fnir_at_fpir=[fnir_at_fpir(m_scores, m_correct, n_scores, f) for f in fpirs], fixed_threshold=threshold,
        failed_images=len(cache.failures),
    )
    # FPIR at a fixed threshold as the gallery grows: random nested subsets of the enrolled identities.
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(enrolled))
    sizes = sorted({max(1, len(order) * k // 8) for k in range(1, 9)})
    for n_size in sizes:
        sub = Gallery(Path(tmp.name) / f"g{n_size}", dim=analyzer.embedder.dim)
        for n in order[:n_size]:
            sub.enroll(n, np.stack([e for e in (cache.get(p) for p in photos[n][:enroll]) if e is not None]))
        s = np.array([c.score if c else -2.0 for c in probe(sub, non)])
        report.fpir_vs_n.append({"N": n_size, "fpir": float(np.mean(accepts(s, threshold))), "nonmated": len(non)})
        sub.close()
    gal.close()
    tmp.cleanup()
    try:
        report.at_threshold = identify_at_threshold(embed_labelled(cache, Path(root), only, progress=False), threshold,
                                                    far_claim, gallery_size, enroll, within_families)
    except EvalError as exc:  # e.g. faces in one identity only: rank-1 above still stands, FAR/FPIR cannot
        report.at_threshold = at_threshold(threshold, far_claim, gallery_size, tar=None, genuine=0, tar_kind="TPIR",
                                           far=None, fpir={"note": f"not measured: {exc}"})
    if plot is not None:
        with figure(plot) as ax:
            ax.plot([r["N"] for r in report.fpir_vs_n], [r["fpir"] for r in report.fpir_vs_n], "o-")
            ax.set_xlabel("gallery size N (identities)")
            ax.set_ylabel(f"FPIR at threshold {threshold:.4f}")
    return report


# ------------------------------------------------------------------ FPIR over every gallery of N identities
@dataclass
class _FamilyOpenSet:
    name: str
    others: np.ndarray  # (probes, m-1): each photo's best score against every other identity's enrolled samples
    mated: np.ndarray  # (mated probes,): score against the probe's own identity (photos after the enrolled ones)
    mated_below: np.ndarray  # (mated probes,): how many other identities score below the own one


@dataclass
class OpenSet:
    """Open-set 1:N over every gallery of ``gallery_size`` identities drawn within a family, in closed form.

    Each identity is enrolled with its first ``enroll`` photos and scored by its best sample (as the gallery
    does). A non-mated probe (any photo of an identity not in the gallery) is a false positive when any of the N
    enrolled identities scores >= threshold; averaged over all C(m-1, N) galleries of its family's other
    identities that is 1 - C(m-1-a, N) / C(m-1, N), a = how many of them score >= threshold. Exact, no sampling
    and no HNSW, so a threshold can be searched and a split benchmark repeated in milliseconds. Galleries stay
    within one family because a family may share a person with another (see ``family_of``).
    """

    gallery_size: int
    enroll: int
    families: list[_FamilyOpenSet]
    skipped_families: dict[str, int]  # family -> identities, too few for a gallery of N plus a stranger

    @property
    def probes(self) -> int:
        return int(sum(len(f.others) for f in self.families))

    def expected_false_positives(self, threshold: float) -> float:
        total = 0.0
        for f in self.families:
            m1 = f.others.shape[1]
            keep = np.array([math.comb(m1 - a, self.gallery_size) for a in range(m1 + 1)], dtype=np.float64)
            miss = keep / math.comb(m1, self.gallery_size)  # P(no false match | a identities over threshold)
            a = np.count_nonzero(f.others >= threshold, axis=1)
            total += float(np.sum(1.0 - miss[a]))
        return total

    def fpir_at(self, threshold: float, target: float = 1.0, confidence: float = CONFIDENCE) -> Bounded:
        """FPIR at ``threshold`` with its exact interval. The interval counts each non-mated photo once (the
        galleries reuse them, so they are not more independent trials) and rounds the expected number of false
        positives up."""
        n = self.probes
        e = self.expected_false_positives(threshold)
        k = min(int(math.ceil(e - 1e-9)), n)
        lo, hi = binomial_interval(k, n, confidence)
        return Bounded(float(threshold), k, n, e / n if n else 0.0, lo, hi, target, hi <= target,
                       supportable_rate(n, confidence))

    def tpir_at(self, threshold: float) -> float | None:
        """True-positive identification rate: a mated probe's own identity is rank-1 and >= threshold."""
        num, den = 0.0, 0
        for f in self.families:
            m1 = f.others.shape[1]
            tab = np.array([math.comb(b, self.gallery_size - 1) for b in range(m1 + 1)], dtype=np.float64)
            tab /= math.comb(m1, self.gallery_size - 1)
            num += float(np.sum((f.mated >= threshold) * tab[f.mated_below]))
            den += len(f.mated)
        return num / den if den else None

    def threshold_for(self, target: float, floor: float = -1.0, confidence: float = CONFIDENCE,
                      decimals: int = 4) -> Bounded:
        """Lowest ``decimals``-digit threshold >= ``floor`` whose measured FPIR's upper bound is <= ``target``;
        :class:`TooFewTrials` when even zero false positives cannot meet it (too few non-mated photos)."""
        n = self.probes
        if n == 0 or supportable_rate(n, confidence) > target:
            raise TooFewTrials(
                f"{n} non-mated probes cannot support FPIR {target:g} at gallery size {self.gallery_size}: the lowest "
                f"FPIR they can support is {supportable_rate(n, confidence):.3g} (needs >= "
                f"{trials_needed(target, confidence)})", n, supportable_rate(n, confidence), trials_needed(target, confidence))
        scores = np.unique(np.concatenate([f.others.ravel() for f in self.families]))
        cands = sorted({floor} | {round_up_above(float(s), decimals) for s in scores[scores >= floor]})
        lo, hi = 0, len(cands) - 1  # the last candidate is above every score: FPIR 0, which meets the target
        while lo < hi:
            mid = (lo + hi) // 2
            if self.fpir_at(cands[mid], target, confidence).meets_target:
                hi = mid
            else:
                lo = mid + 1
        return self.fpir_at(cands[lo], target, confidence)


def open_set(ls: LabelledPhotos, gallery_size: int, enroll: int = 3, identities: np.ndarray | None = None,
             within_families: bool = True) -> OpenSet:
    """The :class:`OpenSet` of ``identities`` (all when None) of a labelled folder at gallery size N."""
    ids = np.arange(len(ls.identities)) if identities is None else np.asarray(sorted(int(i) for i in identities))
    fam = ls.families if within_families else np.array(["all"] * len(ls.identities))
    out, skipped = [], {}
    for f in sorted(set(fam[ids])):
        members = [int(i) for i in ids if fam[i] == f and len(ls.photos_of(int(i)))]
        if len(members) < gallery_size + 1:
            skipped[str(f)] = len(members)
            continue
        photos = [ls.photos_of(i) for i in members]
        enrolled = [ph[:enroll] for ph in photos]
        allp = np.concatenate(photos)
        owner = np.concatenate([np.full(len(ph), c) for c, ph in enumerate(photos)])
        sims = ls.emb[allp] @ ls.emb[np.concatenate(enrolled)].T
        starts = np.cumsum([0] + [len(e) for e in enrolled[:-1]])
        best = np.maximum.reduceat(sims, starts, axis=1)  # (photos, m): best sample per identity
        m = len(members)
        mask = np.ones_like(best, dtype=bool)
        mask[np.arange(len(allp)), owner] = False
        others = best[mask].reshape(len(allp), m - 1)
        own = best[np.arange(len(allp)), owner]
        is_mated = np.concatenate([np.arange(len(ph)) >= enroll for ph in photos])
        below = np.count_nonzero(others < own[:, None], axis=1)
        out.append(_FamilyOpenSet(str(f), others, own[is_mated], below[is_mated]))
    return OpenSet(gallery_size, enroll, out, skipped)


def largest_measurable_gallery(ls: LabelledPhotos, identities: np.ndarray | None, within_families: bool) -> int:
    """The largest N at which FPIR can be measured: a gallery of N identities plus one stranger, in one family."""
    ids = np.arange(len(ls.identities)) if identities is None else np.asarray(identities)
    fam = ls.families if within_families else np.array(["all"] * len(ls.identities))
    sizes = [sum(1 for i in ids if fam[i] == f and len(ls.photos_of(int(i)))) for f in set(fam[ids])]
    return max(sizes, default=0) - 1


def identify_at_threshold(ls: LabelledPhotos, threshold: float, far_claim: float | None, gallery_size: int,
                          enroll: int = 3, within_families: bool = False) -> dict:
    """``at_threshold`` for 1:N: FPIR over every gallery of ``gallery_size`` identities (or the largest the data
    holds, said so), TPIR (own identity rank-1 and >= threshold) at that N, FAR over every cross-identity pair."""
    imp, _ = impostor_scores(ls, within_families=within_families)
    far = rate_at(imp, threshold, far_claim or 1.0) if len(imp) else None
    largest = largest_measurable_gallery(ls, None, within_families)
    n = min(gallery_size, largest)
    fpir: dict = {"note": "no family has 2 identities: FPIR cannot be measured"}
    tpir = None
    if n >= 1:
        os_ = open_set(ls, n, enroll, within_families=within_families)
        b = os_.fpir_at(threshold)
        tpir = os_.tpir_at(threshold)
        fpir = {"measured_at": n, "fpir": b.rate, "interval": [b.lower, b.upper], "nonmated_probes": b.trials,
                "method": f"measured over every gallery of {n} identities", "note": ""}
        if n < gallery_size:
            fpir["note"] = (f"measured at N={n}: the largest {'family' if within_families else 'folder'} has "
                            f"{largest + 1} identities, a gallery of {gallery_size} needs {gallery_size + 1}")
    mated = sum(len(f.mated) for f in os_.families) if n >= 1 else 0
    return at_threshold(threshold, far_claim, gallery_size, tar=tpir, genuine=mated,
                        tar_kind=f"TPIR at N={n}" if n >= 1 else "TPIR", far=far, fpir=fpir)
