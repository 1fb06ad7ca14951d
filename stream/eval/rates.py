"""Pure evaluation metrics (numpy only, no models), so they can be checked against hand-computed cases.

Conventions: higher score = more similar; a pair/probe is accepted when ``score >= threshold``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RateAt:
    """The accept rate at the threshold that meets a target false rate (or why it cannot be met)."""

    target: float
    rate: float | None  # TAR (1:1) or 1 - FNIR (1:N); None when there are too few negatives
    threshold: float | None
    achieved: float | None  # the false rate actually reached on the data
    note: str = ""


def threshold_at_false_rate(negatives: np.ndarray, target: float) -> tuple[float, float]:
    """Lowest threshold whose false-accept rate on ``negatives`` is <= ``target``.

    With sorted-descending negatives d, at most k = floor(target * n) may be accepted, so the threshold is
    just above d[k]. Returns (threshold, achieved rate).
    """
    d = np.sort(np.asarray(negatives, dtype=np.float64))[::-1]
    n = len(d)
    k = int(np.floor(target * n + 1e-9))
    if k >= n:
        return float(d[-1]), 1.0
    thr = float(np.nextafter(d[k], np.inf))
    return thr, float(np.mean(d >= thr))


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> RateAt:
    """True-accept rate at a target false-accept rate; refuses when impostors are too few to measure it."""
    impostor = np.asarray(impostor)
    if len(impostor) * far < 1:
        return RateAt(far, None, None, None, f"too few impostor pairs ({len(impostor)}) to measure FAR {far:g}: need >= {int(np.ceil(1 / far))}")
    thr, achieved = threshold_at_false_rate(impostor, far)
    return RateAt(far, float(np.mean(np.asarray(genuine) >= thr)), thr, achieved)


def roc_curve(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FAR, TAR, thresholds) over every distinct score, thresholds descending."""
    scores = np.concatenate([genuine, impostor])
    labels = np.concatenate([np.ones(len(genuine)), np.zeros(len(impostor))])
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[distinct]
    fp = np.cumsum(1 - y)[distinct]
    tar = np.r_[0.0, tp / max(len(genuine), 1)]
    far = np.r_[0.0, fp / max(len(impostor), 1)]
    return far, tar, np.r_[np.inf, s[distinct]]


def auc(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Area under the ROC curve (= probability a genuine pair outscores an impostor pair; ties count half)."""
    far, tar, _ = roc_curve(genuine, impostor)
    return float(np.trapezoid(tar, far)) if hasattr(np, "trapezoid") else float(np.trapz(tar, far))


def best_accuracy_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """Threshold maximising accuracy; midpoint between adjacent scores to stay off the samples."""
    s = np.unique(scores)
    cands = np.r_[s[0] - 1e-6, (s[:-1] + s[1:]) / 2, s[-1] + 1e-6]
    acc = [np.mean((scores >= t) == same) for t in cands]
    return float(cands[int(np.argmax(acc))])


def kfold_accuracy(scores: np.ndarray, same: np.ndarray, folds: int = 10) -> tuple[float, float, list[float]]:
    """LFW protocol: threshold chosen on 9 folds, accuracy measured on the 10th. Returns mean, std, thresholds.

    Folds are contiguous blocks of the genuine and of the impostor pairs (as LFW's file lays them out).
    """
    scores, same = np.asarray(scores, float), np.asarray(same, bool)
    gi, ii = np.flatnonzero(same), np.flatnonzero(~same)
    fold_of = np.empty(len(scores), int)
    for idx in (gi, ii):
        fold_of[idx] = np.arange(len(idx)) * folds // max(len(idx), 1)
    accs, thrs = [], []
    for f in range(folds):
        test = fold_of == f
        thr = best_accuracy_threshold(scores[~test], same[~test])
        thrs.append(thr)
        accs.append(float(np.mean((scores[test] >= thr) == same[test])))
    return float(np.mean(accs)), float(np.std(accs)), thrs


def fnir_at_fpir(
    mated_scores: np.ndarray, mated_correct: np.ndarray, nonmated_scores: np.ndarray, fpir: float
) -> RateAt:
    """Open-set 1:N. A mated probe is a hit when its rank-1 identity is right and scores >= threshold;
    a non-mated probe is a false positive when its rank-1 score >= threshold. ``rate`` is FNIR here.
    """
    nonmated_scores = np.asarray(nonmated_scores)
    if len(nonmated_scores) * fpir < 1:
        return RateAt(fpir, None, None, None, f"too few non-mated probes ({len(nonmated_scores)}) for FPIR {fpir:g}")
    thr, achieved = threshold_at_false_rate(nonmated_scores, fpir)
    hit = np.asarray(mated_correct, bool) & (np.asarray(mated_scores) >= thr)
    return RateAt(fpir, float(1 - hit.mean()), thr, achieved)


def per_comparison_far_for_gallery(fpir: float, gallery_size: int) -> float:
    """FAR per 1:1 comparison that gives ``fpir`` against N independent identities: 1 - (1 - fpir)^(1/N).

    Why: a non-mated probe is falsely identified when any of N comparisons passes, so the same threshold
    gives FPIR ~ N * FAR; the threshold must rise with N to keep FPIR fixed.
    """
    return 1.0 - (1.0 - fpir) ** (1.0 / max(gallery_size, 1))
