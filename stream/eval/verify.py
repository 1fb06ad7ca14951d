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
from stream.eval.rates import RateAt, auc, kfold_accuracy, tar_at_far


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
    failure_policy: str = "photo without a detectable face: every pair using it is scored -inf (rejected)"
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_verify(analyzer, pairs_file: Path, root: Path, fars=(1e-2, 1e-3, 1e-4), plot: Path | None = None,
                    progress: bool = True) -> VerifyReport:
    require_plotting(plot)
    pairs = parse_pairs(pairs_file)
    cache = EmbeddingCache(analyzer, root)
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
    if plot is not None:
        plot_roc(gen, imp, report.tar_at_far, report.auc, plot)
    return report
