"""1:1 evaluation on the LFW protocol: 10-fold accuracy, ROC AUC and TAR at fixed FARs with thresholds.

Photos where no face is detected count as failures: every pair using one is scored -inf (rejected), so
failures lower TAR instead of being silently dropped; their number is reported.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from stream.eval.photos import EmbeddingCache, pair_scores, parse_pairs, require_photos, require_plotting
from stream.eval.plots import plot_roc
from stream.eval.rates import (RateAt, at_threshold, auc, binomial_interval, fpir_for_far, kfold_accuracy, rate_at,
                               tar_at_far)


@dataclass
class VerifyReport:
    pairs: int
    genuine: int
    impostor: int
    accuracy_mean: float
    accuracy_std: float
    fold_thresholds: list[float]
    auc: float
    tar_at_far: list[RateAt]
    images: int
    failed_images: int
    failure_policy: str = ("photo without a detectable face, or whose face the exposure gate drops (quality.max_clipped): "
                           "every pair using it is scored -inf (rejected)")
    seconds: float = 0.0
    at_threshold: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def verify_at_threshold(genuine: np.ndarray, impostor: np.ndarray, threshold: float, far_claim: float | None,
                        gallery_size: int) -> dict:
    """TAR and FAR (with its exact interval) of the pairs at the configured threshold, and the FPIR that FAR
    predicts at the configured gallery size: 1:1 pairs hold no gallery, so FPIR here is the formula
    1 - (1 - FAR)^N applied to the FAR and both ends of its interval (``eval identify`` measures it)."""
    imp = np.asarray(impostor, float)
    far = rate_at(imp[np.isfinite(imp)], threshold, far_claim or 1.0)  # a pair without a face compares nothing
    lo, hi = binomial_interval(far.false_accepts, far.trials) if far.trials else (0.0, 1.0)
    fpir = {"measured_at": gallery_size, "fpir": fpir_for_far(far.rate, gallery_size),
            "interval": [fpir_for_far(lo, gallery_size), fpir_for_far(hi, gallery_size)],
            "method": "predicted by 1-(1-FAR)^N", "nonmated_probes": None,
            "note": "1:1 pairs have no gallery: eval identify measures FPIR"}
    gen = np.asarray(genuine, float)
    return at_threshold(threshold, far_claim, gallery_size, tar=float(np.mean(gen >= threshold)) if len(gen) else None,
                        genuine=len(gen), tar_kind="genuine pairs", far=far if far.trials else None, fpir=fpir)


def evaluate_verify(analyzer, pairs_file: Path, root: Path, fars=(1e-2, 1e-3, 1e-4), plot: Path | None = None,
                    progress: bool = True, threshold: float | None = None, far_claim: float | None = None,
                    gallery_size: int = 10, max_clipped: float | None = None) -> VerifyReport:
    """The LFW protocol on a pairs file; with ``threshold`` also what that threshold does (``at_threshold``).
    ``max_clipped``: the exposure gate photos must pass (``quality.max_clipped``; None: none)."""
    require_plotting(plot)
    pairs = parse_pairs(pairs_file)
    cache = EmbeddingCache(analyzer, root, max_clipped)
    require_photos(cache, pairs)
    t = time.perf_counter()
    scores = pair_scores(cache, pairs, progress)
    same = np.array([p.same for p in pairs])
    finite = np.where(np.isfinite(scores), scores, -2.0)  # -inf -> below every real cosine
    mean, std, thrs = kfold_accuracy(finite, same)
    gen, imp = finite[same], finite[~same]
    report = VerifyReport(
        pairs=len(pairs), genuine=int(same.sum()), impostor=int((~same).sum()), accuracy_mean=mean,
        accuracy_std=std, fold_thresholds=thrs, auc=auc(gen, imp), tar_at_far=[tar_at_far(gen, imp, f) for f in fars],
        images=len(cache.cache), failed_images=len(cache.failures), seconds=time.perf_counter() - t,
    )
    if threshold is not None:
        report.at_threshold = verify_at_threshold(scores[same], scores[~same], threshold, far_claim, gallery_size)
    if plot is not None:
        plot_roc(gen, imp, report.tar_at_far, report.auc, plot)
    return report
