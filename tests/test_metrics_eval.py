"""Metric code against hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

from stream.eval.rates import (
    auc, fnir_at_fpir, kfold_accuracy, per_comparison_far_for_gallery, tar_at_far, threshold_at_false_rate,
)


def test_threshold_at_false_rate_by_hand():
    neg = np.array([0.1, 0.9, 0.5, 0.7, 0.3, 0.2, 0.4, 0.6, 0.8, 0.0])
    thr, achieved = threshold_at_false_rate(neg, 0.1)  # one of ten may pass: the 0.9
    assert 0.8 < thr <= 0.8 + 1e-12 and achieved == pytest.approx(0.1)
    thr, achieved = threshold_at_false_rate(neg, 0.0)
    assert thr > 0.9 and achieved == 0.0


def test_tar_at_far_by_hand():
    gen = np.array([0.95, 0.85, 0.75, 0.65])
    imp = np.array([0.1, 0.9, 0.5, 0.7, 0.3, 0.2, 0.4, 0.6, 0.8, 0.0])
    r = tar_at_far(gen, imp, 0.1)  # threshold just above 0.8 -> genuine 0.95 and 0.85 pass
    assert r.rate == pytest.approx(0.5) and r.achieved == pytest.approx(0.1)
    r = tar_at_far(gen, imp, 0.001)
    assert r.rate is None and "too few impostor pairs" in r.note


def test_auc_by_hand():
    assert auc(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == pytest.approx(1.0)
    assert auc(np.array([0.1, 0.2]), np.array([0.9, 0.8])) == pytest.approx(0.0)
    # one of four genuine/impostor orderings is wrong -> 0.75
    assert auc(np.array([0.9, 0.4]), np.array([0.5, 0.1])) == pytest.approx(0.75)


def test_kfold_accuracy_by_hand():
    # 10 genuine, 10 impostor pairs; one genuine pair (fold 3) scores low: 19/20 right overall.
    gen = np.full(10, 0.9)
    gen[3] = 0.2
    imp = np.full(10, 0.3)
    scores = np.r_[gen, imp]
    same = np.r_[np.ones(10, bool), np.zeros(10, bool)]
    mean, std, thrs = kfold_accuracy(scores, same, folds=10)
    # every fold holds 1 genuine + 1 impostor; fold 3 gets its genuine wrong (0.5), the rest 1.0
    assert mean == pytest.approx(0.95)
    assert std == pytest.approx(np.std([1.0] * 9 + [0.5]))
    assert all(0.3 < t < 0.9 for t in thrs)


def test_fnir_at_fpir_by_hand():
    mated = np.array([0.9, 0.8, 0.7, 0.95])
    correct = np.array([True, True, True, False])  # the last one's rank-1 is the wrong person
    nonmated = np.array([0.5, 0.6, 0.75, 0.4, 0.3, 0.2, 0.1, 0.0, 0.35, 0.45])
    r = fnir_at_fpir(mated, correct, nonmated, 0.1)  # threshold just above 0.6
    assert r.threshold == pytest.approx(0.6, abs=1e-9)
    assert r.rate == pytest.approx(0.25)


def test_threshold_must_rise_with_gallery_size():
    assert per_comparison_far_for_gallery(0.01, 1) == pytest.approx(0.01)
    assert per_comparison_far_for_gallery(0.01, 100) == pytest.approx(1.005e-4, rel=1e-2)
