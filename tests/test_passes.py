"""Pass trials (``stream.eval.passes``): the track and votes rules scored on passes built from labelled photos."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stream.eval.calibrate import measure_tracks_at
from stream.eval.passes import PassError, pass_trials
from stream.eval.photos import LabelledPhotos


def folder(vectors: list[np.ndarray], photos: int = 8, noise: float = 0.0, seed: int = 0) -> LabelledPhotos:
    """One family (``fam_``) of identities, ``photos`` unit embeddings each around its vector."""
    rng = np.random.default_rng(seed)
    emb, ident = [], []
    for i, v in enumerate(vectors):
        e = v[None] + noise * rng.standard_normal((photos, len(v)))
        emb.append(e / np.linalg.norm(e, axis=1, keepdims=True))
        ident += [i] * photos
    names = [f"fam_{i}" for i in range(len(vectors))]
    paths = [Path(f"/x/{names[i]}/{k}.jpg") for i in range(len(vectors)) for k in range(photos)]
    return LabelledPhotos(Path("/x"), names, paths, np.array(ident), np.concatenate(emb).astype(np.float32), {})


def unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float64)
    return v / np.linalg.norm(v)


def test_identical_looks_score_the_identity_cosine_under_both_rules():
    a, b, c = unit(1, 0, 0), unit(0.8, 0.6, 0), unit(0, 0, 1)
    ls = folder([a, b, c])
    for rule in ("track", "votes"):
        t = pass_trials(ls, enroll=3, length=3, min_chips=2, draws=4, within_families=True, rule=rule)
        assert np.allclose(t.genuine(), 1.0, atol=1e-6)
        imp = np.sort(t.impostors())
        # 3 identities: each pass against the 2 other templates, per draw
        assert len(imp) == 4 * 3 * 2
        want = np.sort(np.repeat([a @ b, a @ c, b @ c], 2 * 4))
        assert np.allclose(imp, want, atol=1e-6), rule


def test_votes_needs_that_many_looks_above_the_threshold():
    # identity 0's looks: half of them close to identity 1, half its own: one look vs two
    base = [unit(1, 0, 0, 0), unit(0, 1, 0, 0), unit(0, 0, 1, 0)]
    ls = folder(base, photos=10, noise=0.05, seed=3)
    one = pass_trials(ls, enroll=3, length=5, min_chips=1, draws=20, within_families=True, rule="votes")
    two = pass_trials(ls, enroll=3, length=5, min_chips=2, draws=20, within_families=True, rule="votes")
    # the same seeded draws: the 2nd best look never scores above the best one
    assert np.all(two.genuine() <= one.genuine() + 1e-12) and np.all(two.impostors() <= one.impostors() + 1e-12)
    assert np.any(two.impostors() < one.impostors())  # the test can fail: votes change the score
    at = measure_tracks_at(two, 0.5, gallery_size=2)
    assert at["tar"] == 1.0 and at["false_accepts"] == 0 and at["impostor_passes"] == len(two.impostors())
    assert "votes rule" in two.describe() and one.rule == "votes"


def test_a_look_alike_look_is_a_false_accept_for_votes_1_but_not_2():
    a, b = unit(1, 0, 0), unit(0, 1, 0)
    ls = folder([a, b, unit(0, 0, 1)], photos=8)
    emb = ls.emb.copy()
    emb[0] = unit(0.05, 1, 0)
    ls = LabelledPhotos(ls.root, ls.identities, ls.paths, ls.ident, emb.astype(np.float32), {})
    t1 = pass_trials(ls, enroll=3, length=5, min_chips=1, draws=50, within_families=True, rule="votes")
    t2 = pass_trials(ls, enroll=3, length=5, min_chips=2, draws=50, within_families=True, rule="votes")
    def zero_as_b(t):  # identity 0's passes scored against identity 1's enrolment
        (blk,) = t.blocks
        return blk.scores[:, list(blk.pass_owner).index(0), list(blk.tmpl_owner).index(1)]

    assert (zero_as_b(t1) > 0.99).sum() > 0  # in a pass, the look-alike photo alone names b
    assert (zero_as_b(t2) > 0.99).sum() == 0  # one look is not two votes


def test_bad_rule_and_impossible_passes_are_refused():
    ls = folder([unit(1, 0), unit(0, 1)], photos=4)
    with pytest.raises(PassError, match="unknown pass rule"):
        pass_trials(ls, rule="mean")
    with pytest.raises(PassError, match="no identity has 8 photos"):
        pass_trials(ls, enroll=3, length=5, min_chips=2)
    with pytest.raises(PassError, match="cannot be decided"):
        pass_trials(ls, enroll=1, length=2, min_chips=3)


def _photo_result(threshold: float) -> dict:
    """The fields of calibrate_threshold's result that measure_votes reads."""
    return {"threshold": threshold, "target": 0.001, "per_comparison_far": 0.001, "gallery_size": None,
            "fpir_check": {"gallery_size": 2}}


def test_the_votes_threshold_is_never_below_the_per_photo_one_and_rises_when_its_passes_need_it():
    from stream.eval.calibrate import measure_votes

    # many identities whose looks are noisy copies of near-by vectors: impostor passes score up to ~0.6
    base = [unit(*(np.eye(8)[i % 8] + 0.6 * np.eye(8)[(i + 1) % 8])) for i in range(8)]
    ls = folder(base, photos=14, noise=0.08, seed=2)
    t = pass_trials(ls, enroll=3, length=6, min_chips=2, draws=200, within_families=True, rule="votes")
    top = float(np.max(t.impostors()))
    low = measure_votes(t, _photo_result(0.2), margin=0.0)  # a per-photo threshold far under the impostors
    assert low["set_by"] == "its own passes" and low["threshold"] > top - 0.05
    assert low["threshold"] == low["own_threshold"] and low["false_accepts"] <= 0.001 * len(t.impostors()) + 1
    high = measure_votes(t, _photo_result(0.99), margin=0.0)  # one above every impostor: it decides
    assert high["threshold"] == 0.99 and high["set_by"] == "the per-photo threshold" and high["false_accepts"] == 0
    wide = measure_votes(t, _photo_result(0.2), margin=0.02)
    assert wide["threshold"] == pytest.approx(low["threshold"] + 0.02, abs=2e-4)


def test_config_votes_threshold_is_the_higher_of_the_two_and_the_per_photo_one_for_old_records():
    from stream.config import SHIPPED_CALIBRATIONS, load_config

    rec = SHIPPED_CALIBRATIONS["fast"].model_dump()
    for votes, want in ((None, rec["threshold"]), (rec["threshold"] - 0.05, rec["threshold"]),
                        (rec["threshold"] + 0.01, rec["threshold"] + 0.01)):
        cfg = load_config(overrides={"matching": {"calibration": {**rec, "votes_threshold": votes}}})
        assert cfg.votes_threshold == pytest.approx(want) and cfg.threshold == rec["threshold"]
