"""Thresholds that keep their promise: exact binomial bounds, calibration on score distributions with known tails,
refusals, rounding, 1:N in closed form. Fast: numpy only, except the CLI cases, which fail before any model loads.

Synthetic embeddings and scores are the point here (a known true FAR is what a calibration can be checked
against); the same code on the real dev data is in tests/test_eval_data.py.
"""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from stream.cli import main
from stream.eval.calibrate import calibrate_threshold, holdout_check, split_identities
from stream.eval.identify import open_set
from stream.eval.photos import EvalError, LabelledPhotos, genuine_scores, impostor_scores, list_identities
from stream.eval.rates import (TooFewTrials, binomial_interval, bounded_threshold, fpir_for_far, rate_at,
                               round_up_above, supportable_rate, threshold_at_false_rate, trials_needed, verdict)


def normal_sf(t: float) -> float:
    """True FAR at threshold t when impostor scores are N(0, 1): 1 - Phi(t)."""
    return 0.5 * math.erfc(t / math.sqrt(2))


# ------------------------------------------------------------------ the exact interval
def test_binomial_interval_known_values():
    lo, hi = binomial_interval(0, 3000)
    assert lo == 0 and hi == pytest.approx(0.000998, abs=2e-6)  # rule of three: ~3/n
    lo, hi = binomial_interval(7, 1500)  # the unseen-data measurement
    assert lo == pytest.approx(0.0019, abs=5e-5) and hi == pytest.approx(0.0096, abs=5e-5)
    lo, hi = binomial_interval(4, 300)
    assert lo == pytest.approx(0.003645, abs=5e-6) and hi == pytest.approx(0.033785, abs=5e-6)
    assert binomial_interval(10, 10)[1] == 1.0 and binomial_interval(10, 10)[0] == pytest.approx(0.05 ** 0.1)


def test_binomial_interval_matches_the_beta_quantiles():
    beta = pytest.importorskip("scipy.stats").beta  # scipy comes with scikit-image; only the check uses it
    for k, n in [(1, 10), (3, 50), (50, 100), (999, 1000), (2, 1_869_191), (1749, 1_869_191)]:
        lo, hi = binomial_interval(k, n)
        assert lo == pytest.approx(beta.ppf(0.025, k, n - k + 1), rel=1e-6)
        assert hi == pytest.approx(beta.ppf(0.975, k + 1, n - k), rel=1e-6)


def test_supportable_rate_and_trials_needed_agree():
    assert supportable_rate(3000) == pytest.approx(binomial_interval(0, 3000)[1])
    n = trials_needed(1e-3)
    assert n == 2995 and supportable_rate(n) <= 1e-3 < supportable_rate(n - 1)


# ------------------------------------------------------------------ calibration on known tails
def test_the_chosen_threshold_keeps_its_promise_on_a_known_distribution():
    """Impostors ~ N(0,1): the true FAR at t is 1 - Phi(t). The bound keeps the target in >= 95 % of seeded
    repetitions; the plain empirical quantile (the old rule) misses it about half the time."""
    target, n, reps = 1e-2, 4000, 300
    kept = naive_kept = 0
    for seed in range(reps):
        imp = np.random.default_rng(seed).standard_normal(n)
        b = bounded_threshold(imp, target, ceiling=None)
        assert b.upper <= target and b.meets_target
        kept += normal_sf(b.threshold) <= target
        naive_kept += normal_sf(threshold_at_false_rate(imp, target)[0]) <= target
    assert kept / reps >= 0.95
    assert naive_kept / reps < 0.8  # the check can tell a rule that does not keep its promise


def test_more_impostors_buy_a_lower_threshold_for_the_same_promise():
    rng = np.random.default_rng(1)
    small = bounded_threshold(rng.standard_normal(4000), 1e-2, ceiling=None)
    big = bounded_threshold(rng.standard_normal(400_000), 1e-2, ceiling=None)
    assert big.threshold < small.threshold
    assert normal_sf(big.threshold) == pytest.approx(1e-2, rel=0.1)  # close to the true quantile with enough data


def test_too_few_impostors_are_refused_with_the_far_they_can_support():
    imp = np.random.default_rng(0).standard_normal(1000)
    with pytest.raises(TooFewTrials) as err:
        bounded_threshold(imp, 1e-3, ceiling=None)
    assert err.value.supportable == pytest.approx(1 - 0.05 ** (1 / 1000))
    assert "0.00299" in str(err.value) and "2995" in str(err.value)  # the supportable FAR and what 1e-3 needs
    weak = bounded_threshold(imp, 1e-3, allow_weak=True, ceiling=None)  # proceeds: above every impostor, but says it is weak
    assert not weak.meets_target and weak.false_accepts == 0 and weak.threshold > imp.max()
    with pytest.raises(TooFewTrials, match="no impostor pairs"):
        bounded_threshold(np.empty(0), 1e-3)


def test_rounding_never_moves_a_threshold_below_the_impostor_it_excludes():
    imp = np.r_[np.full(2999, 0.5), 0.92814]  # round(0.92814..., 4) = 0.9281 would accept it
    b = bounded_threshold(imp, 1e-3)
    assert b.false_accepts == 0 and b.threshold == 0.9282 and b.threshold > 0.92814
    for x in np.random.default_rng(2).uniform(-1, 1, 20_000):
        t = round_up_above(float(x))
        assert x < t <= x + 1e-4 + 1e-12 and round(t, 4) == t
    assert round_up_above(0.9282) == 0.9283  # a threshold equal to an impostor's score would accept it


def test_an_impostor_at_the_top_of_the_cosine_range_cannot_be_excluded():
    with pytest.raises(TooFewTrials, match="same photo under two names"):
        bounded_threshold(np.r_[np.zeros(5000), 1.0], 1e-3)


def test_verdicts():
    assert verdict(0.0, 0.0009, 0.001) == "kept"
    assert verdict(0.0005, 0.002, 0.001) == "consistent"
    assert verdict(0.0019, 0.0096, 0.001) == "broken"  # the 7 of 1500 against a 0.1 % claim


# ------------------------------------------------------------------ synthetic people: 1:N in closed form
def people(n_ids: int, photos: int, seed: int, spread: float = 0.6, twins: int = 0) -> LabelledPhotos:
    """Identities as random centres on the 16-d sphere with noisy photos; ``twins`` pairs of look-alikes share
    most of their centre. Families: ``a_*`` and ``b_*`` alternate."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_ids, 16))
    for t in range(twins):
        centres[2 * t + 1] = centres[2 * t] + 0.25 * rng.standard_normal(16)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    emb = np.repeat(centres, photos, axis=0) + spread / 4 * rng.standard_normal((n_ids * photos, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    names = [f"{'ab'[i % 2]}_{i:02d}" for i in range(n_ids)]
    return LabelledPhotos(Path("synthetic"), names, [Path(f"{n}/{k}.jpg") for n in names for k in range(photos)],
                          np.repeat(np.arange(n_ids), photos), emb.astype(np.float32), {})


def test_impostor_and_genuine_pairs_are_every_pair_and_families_can_be_kept_apart():
    ls = people(6, 5, seed=0)
    imp, available = impostor_scores(ls)
    assert len(imp) == available == 15 * 25 and len(genuine_scores(ls)) == 6 * 10
    within, _ = impostor_scores(ls, within_families=True)
    assert len(within) == 2 * 3 * 25  # 3 identities per family, 3 pairs each
    sampled, available = impostor_scores(ls, max_pairs=100, seed=3)
    assert len(sampled) == 100 and available == 375
    assert np.array_equal(sampled, impostor_scores(ls, max_pairs=100, seed=3)[0])  # seeded: repeatable


def test_open_set_fpir_in_closed_form_equals_every_gallery_enumerated():
    ls = people(7, 6, seed=1, twins=1)
    n, enroll, thr = 3, 2, 0.6
    os_ = open_set(ls, n, enroll, within_families=False)
    emb, ident = ls.emb.astype(np.float64), ls.ident
    fp = trials = 0
    for gallery in itertools.combinations(range(7), n):
        samples = {g: emb[np.flatnonzero(ident == g)[:enroll]] for g in gallery}
        for p in np.flatnonzero(~np.isin(ident, gallery)):
            fp += max(float((samples[g] @ emb[p]).max()) for g in gallery) >= thr
            trials += 1
    galleries_per_probe = math.comb(6, n)
    assert os_.probes == 42 and trials == 42 * galleries_per_probe
    assert os_.expected_false_positives(thr) == pytest.approx(fp / galleries_per_probe)
    b = os_.fpir_at(thr)
    assert b.rate == pytest.approx(fp / trials) and b.lower <= b.rate <= b.upper


def test_the_measured_fpir_overrules_the_formula_when_look_alikes_make_it_grow_faster():
    ls = people(12, 40, seed=3, spread=0.9, twins=3)
    res = calibrate_threshold(ls, 0.05, gallery_size=5, margin=0.0)
    check = res["fpir_check"]
    assert "overrules" in check["verdict"]
    assert check["formula"]["interval"][1] > 0.05  # the formula's threshold did not keep FPIR 5 %
    assert check["final"]["interval"][1] <= 0.05 and res["threshold"] > res["far_threshold"]
    # and with the margin the threshold only rises
    assert calibrate_threshold(ls, 0.05, gallery_size=5)["threshold"] >= res["threshold"]


def test_a_gallery_size_the_data_cannot_hold_is_refused_for_1n_and_noted_for_1to1():
    ls = people(6, 30, seed=4)
    with pytest.raises(TooFewTrials, match="gallery of 8"):
        calibrate_threshold(ls, 0.05, gallery_size=8)
    res = calibrate_threshold(ls, 0.01, check_gallery_size=8)
    assert res["fpir_check"]["verdict"].startswith("not checked") and not res["weak"]


def test_holdout_reports_far_and_fpir_on_identities_it_did_not_calibrate_on():
    ls = people(20, 20, seed=5, twins=2)
    res = holdout_check(ls, 0.5, 0.01, seed=7, check_gallery_size=4)
    h = res["holdout"]
    assert set(h["calibrated_on"]).isdisjoint(h["held_out"]) and len(h["held_out"]) == 10
    assert 0 <= h["far_interval"][0] <= h["far"] <= h["far_interval"][1]
    assert h["false_accepts"] == round(h["far"] * h["impostor_pairs"])
    assert h["fpir"]["measured_at"] == 4 and h["fpir"]["fpir"] is not None
    keep, held = split_identities(ls, 0.5, 7)
    assert [ls.identities[i] for i in held] == h["held_out"]  # the split is the seeded one


# ------------------------------------------------------------------ the command line: refusals before the models
def run_cli(*args: str):
    return CliRunner().invoke(main, list(args))


def test_calibrate_on_an_empty_folder_is_an_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run_cli("calibrate", "--root", str(empty))
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1 and "at least 2 identities" in res.stderr and str(empty) in res.stderr
    (empty / "solo").mkdir()
    (empty / "solo" / "1.jpg").write_bytes(b"x")
    (empty / "nobody").mkdir()  # a folder without photos is no identity
    out = run_cli("--json", "calibrate", "--root", str(empty))
    assert out.exit_code == 2 and json.loads(out.stdout)["error"]["code"] == "eval_input"
    with pytest.raises(EvalError, match="found 1"):
        list_identities(empty)


def test_formula_helpers():
    assert fpir_for_far(1e-3, 10) == pytest.approx(1 - 0.999 ** 10)
    r = rate_at(np.array([0.1, 0.5, 0.9]), 0.5)
    assert r.false_accepts == 2 and r.trials == 3  # score >= threshold accepts


def test_a_threshold_one_step_above_a_float32_score_rejects_that_score_in_tar_and_fnir():
    from stream.eval.rates import fnir_at_fpir, tar_at_far

    imp = np.array([0.9, 0.8, 0.7, 0.6] * 250, dtype=np.float32)  # 1000 impostors; FAR 1e-3 allows 1 above
    s = np.float32(0.9)
    gen = np.array([s, s, 0.95], dtype=np.float32)  # two genuine scores exactly at the excluded impostor score
    r = tar_at_far(gen, imp, 0.001)
    assert r.threshold > float(s) and r.rate == pytest.approx(1 / 3)  # only 0.95 is accepted
    f = fnir_at_fpir(gen, np.ones(3, bool), imp, 0.001)
    assert f.rate == pytest.approx(2 / 3)
