"""Open-set 1:N at scale (stream/eval/identify_scale.py): the arithmetic and the protocol on hand-built photos.

Every case is a tiny :class:`LabelledPhotos` of unit vectors built so the cosines are known exactly (orthogonal
coordinates: a person's direction, a family direction, one private residual coordinate per photo), and so the
numbers do not depend on which identities the seeded folds happen to make strangers. Fast: numpy only, and the
CLI cases fail before any model or photo is touched.
"""
from __future__ import annotations

import math
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stream.eval.identify_scale import (Alias, _folds, find_aliases, fnir_fpir_at, gaussian_distractors,
                                        identify_at_scale, markdown, merge_aliases, swap_distractors,
                                        synthetic_check)
from stream.eval.photos import LabelledPhotos
from stream.eval.rates import (binomial_interval, bounded_threshold, per_comparison_far_for_gallery,
                               threshold_at_false_rate)

REPO = Path(__file__).resolve().parent.parent


class Space:
    """Named orthogonal unit directions, handed out on first use: ``v({"u": 0.6, "e_a": 0.8})``."""

    def __init__(self, d: int) -> None:
        self.d, self.axes = d, {}

    def v(self, parts: dict[str, float]) -> np.ndarray:
        out = np.zeros(self.d, np.float32)
        for name, w in parts.items():
            out[self.axes.setdefault(name, len(self.axes))] = w
        return out

    def private(self) -> str:
        return f"r{len(self.axes)}"


def photos(groups: dict[str, list[np.ndarray]]) -> LabelledPhotos:
    """``{identity: [unit vectors]}`` as LabelledPhotos (identities sorted, photos grouped, in the given order).
    Not renormalised: the cosines stay the exact float32 products the construction names."""
    names = sorted(groups)
    ident = np.concatenate([np.full(len(groups[n]), k, np.int64) for k, n in enumerate(names)])
    emb = np.stack([e for n in names for e in groups[n]]).astype(np.float32)
    paths = [Path("/faces") / n / f"{j}.jpg" for n in names for j in range(len(groups[n]))]
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-6)
    return LabelledPhotos(Path("/faces"), names, paths, ident, emb, {})


def orthogonal_people(families: dict[str, int], per: int, space: Space, centre: float = 0.8) -> dict[str, list]:
    """Every identity its own direction, every photo its own residual: same person ``centre**2``, else 0."""
    rest = math.sqrt(1 - centre ** 2)
    return {f"{fam}_{k}": [space.v({f"e_{fam}_{k}": centre, space.private(): rest}) for _ in range(per)]
            for fam, n in families.items() for k in range(n)}


def clustered(n_per_family: int, per: int, seed: int, d: int = 6, spread: float = 0.35) -> LabelledPhotos:
    """Two families of random people (centre + Gaussian noise, normalised): scores that spread over (-1, 1)."""
    rng = np.random.default_rng(seed)
    groups = {}
    for fam in ("aa", "bb"):
        base = rng.standard_normal(d)
        for k in range(n_per_family):
            c = base + 1.2 * rng.standard_normal(d)
            e = c + spread * np.linalg.norm(c) * rng.standard_normal((per, d)) / math.sqrt(d)
            groups[f"{fam}_{k:02d}"] = list((e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32))
    return photos(groups)


# ------------------------------------------------------------------ the arithmetic
def test_fnir_fpir_at_counts_a_tie_with_another_identity_as_a_miss():
    own = np.array([0.9, 0.5, 0.5, 0.3])
    wrong = np.array([0.1, 0.5, 0.6, 0.1])  # hit; tie (miss); beaten (miss); own below the threshold (miss)
    fnir, fpir = fnir_fpir_at(own, wrong, np.array([0.2, 0.5, 0.7, 0.4, 0.1]), 0.4)
    assert fnir == pytest.approx(0.75)
    assert (fpir.false_positives, fpir.trials, fpir.rate) == (3, 5, pytest.approx(0.6))  # >= accepts: 0.4 counts
    assert (fpir.lower, fpir.upper) == pytest.approx(binomial_interval(3, 5))
    assert fnir_fpir_at(own, np.full(4, -np.inf), np.zeros(1), 0.3)[0] == 0.0  # alone in the gallery: all hits


def test_a_threshold_just_above_a_float32_score_does_not_accept_it():
    """threshold_at_false_rate puts the threshold one float64 step above the k-th score; compared with float32
    scores as a float32 it rounds back onto that score and accepts it (FPIR (k+1)/n, not <= k/n)."""
    tops = np.array([0.9, 0.36, 0.36, 0.1], np.float32)
    thr, achieved = threshold_at_false_rate(tops, 0.25)
    assert achieved == 0.25
    fnir, fpir = fnir_fpir_at(tops, np.zeros(4, np.float32), tops, thr)
    assert fpir.false_positives == 1 and fnir == pytest.approx(0.75)
    assert [r.real.false_positives for r in synthetic_check(tops, tops, 2, levels=(0.5, 0.25))] == [1, 1]
    assert [r.synthetic_false_positives for r in synthetic_check(tops, tops, 2, levels=(0.5, 0.25))] == [1, 1]


def hand_built() -> LabelledPhotos:
    """aa_1, aa_2: 4 photos 0.8 e_aa_i + 0.6 r, then T = 0.6 e_aa_i + 0.8 u (u: the bb family's direction).
    bb_1, bb_2: 4 photos 0.6 u + 0.6 e_bb_j + sqrt(.28) r. With 2 folds each fold's strangers are one aa and
    one bb and the other two are enrolled (3 photos each), whichever way the seed deals them, so per fold:

    mated probes: aa photo 4 (own 0.64, wrong 0), aa's T (own 0.6*0.8 = 0.48, wrong bb 0.8*0.6 = 0.48: a tie),
    bb photo 4 (own 0.72, wrong 0). Non-mated: the stranger aa's 4 photos 0, its T 0.48 (vs the enrolled bb),
    the stranger bb's 4 photos 0.36 (0.6 * 0.6 on u).
    Impostor pairs (121): T_1.T_2 0.64 once, T vs bb 0.48 x16, bb_1 vs bb_2 0.36 x16, 0 x88."""
    s = Space(32)
    g = {}
    for i in (1, 2):
        g[f"aa_{i}"] = [s.v({f"e_aa_{i}": 0.8, s.private(): 0.6}) for _ in range(4)] + [
            s.v({f"e_aa_{i}": 0.6, "u": 0.8})]
        g[f"bb_{i}"] = [s.v({"u": 0.6, f"e_bb_{i}": 0.6, s.private(): math.sqrt(0.28)}) for _ in range(4)]
    return photos(g)


def test_hand_built_fpir_and_fnir_follow_the_threshold_and_the_tie_rule():
    ls = hand_built()
    rep = identify_at_scale(ls, sizes=(2,), fpirs=(0.2, 0.6, 0.01), folds=2, synthetic=None)
    assert rep.aliases == [] and rep.identities == 4 and rep.photos == 18 and rep.impostor_pairs == 121
    r20, r60, r01 = rep.rows
    for r in rep.rows:
        assert (r.mated_probes, r.nonmated_probes, r.real_distractors, r.synthetic_distractors) == (6, 18, 0, 0)
    # FPIR 0.2 of 18: at most floor(3.6) = 3 may pass; sorted tops 0.48, 0.48, 0.36 x8, 0 x8: just above 0.36
    assert 0.36 - 1e-6 < r20.measured.threshold < 0.3601
    assert (r20.measured.false_positives, r20.measured.trials) == (2, 18)
    assert r20.measured_contains_target is True
    assert r20.fnir_measured == pytest.approx(2 / 6)  # the two T probes: own 0.48 >= t, tied with bb: misses
    # FPIR 0.6: floor(10.8) = 10 pass: the threshold sits just above 0, both T and all 8 bb strangers pass
    assert 0 < r60.measured.threshold < 1e-6 and r60.measured.false_positives == 10
    assert r60.fnir_measured == pytest.approx(2 / 6)  # still the ties, though own 0.48 is far above t
    assert r60.fpir_at_smallest_n_threshold == r60.measured  # one N: its own threshold
    # the promise: FAR bound on the 121 impostor pairs at 1 - 0.4^(1/(2*3)); the k it allows lands in the 0.48s
    far = per_comparison_far_for_gallery(0.6, 6)
    assert r60.per_comparison_far == pytest.approx(far)
    assert r60.promise.threshold == pytest.approx(0.4801)
    assert r60.promise.false_positives == 0 and r60.promise_verdict == "kept"
    assert r60.fnir_promise == pytest.approx(2 / 6)  # T's own 0.48 < 0.4801
    # FPIR 0.01: 18 probes cannot measure it, 121 pairs cannot support FAR 1.7e-3: said, not promised
    assert r01.measured is None and r01.fnir_measured is None and r01.promise is None and r01.fnir_promise is None
    assert r01.promise_verdict == "not supported"
    assert "18 non-mated probes cannot measure FPIR 0.01" in r01.note and "no promise: 121 impostor pairs" in r01.note
    table = markdown(rep, "hand")
    assert table[0] == "**hand**" and sum(ln.startswith("| 2 | ") for ln in table) == 3
    assert any(ln.startswith("| 2 | 0.01 | n/a |") and "not supported (1.7e-03)" in ln for ln in table)


def test_the_promise_counts_comparisons_as_samples_or_identities_and_adds_the_margin():
    ls = hand_built()
    ids = identify_at_scale(ls, sizes=(2,), fpirs=(0.6,), folds=2, synthetic=None, count="identities").rows[0]
    # C = N = 2: FAR 1 - 0.4^(1/2) = 0.37 lets 35+ of 121 pairs pass, so the bound reaches the zeros
    assert ids.per_comparison_far == pytest.approx(1 - 0.4 ** 0.5)
    assert ids.promise.threshold == pytest.approx(0.0001) and ids.promise.false_positives == 10
    imp = np.array([0.64] + [0.48] * 16 + [0.36] * 16 + [0.0] * 88)
    assert ids.promise.threshold == bounded_threshold(imp, 1 - 0.4 ** 0.5).threshold
    m = identify_at_scale(ls, sizes=(2,), fpirs=(0.6,), folds=2, synthetic=None, margin=0.5).rows[0]
    assert m.promise.threshold == pytest.approx(0.9801) and m.promise.false_positives == 0
    assert m.fnir_promise == 1.0  # nothing scores 0.98: every mated probe misses


def test_every_photo_is_a_non_mated_probe_exactly_once():
    """Each identity's third photo (enrolled) is one vector g, the others w g + sqrt(1 - w^2) r with a w of their
    own: every gallery holds g, so a probe's top score is its own w (1 for the g photos) whatever the roles, and
    the measured thresholds at FPIR (k + 1/2) / n read back the sorted top scores one by one."""
    s = Space(40)
    ws = iter(np.round(np.linspace(0.05, 0.95, 24), 3))
    g = {}
    for fam in ("aa", "bb"):
        for k in range(3):
            own = [s.v({"g": w, s.private(): math.sqrt(1 - w * w)}) for w in (next(ws) for _ in range(4))]
            g[f"{fam}_{k}"] = own[:2] + [s.v({"g": 1.0})] + own[2:]
    ls = photos(g)
    n = len(ls.paths)
    fpirs = [(k + 0.5) / n for k in range(1, n)]
    rep = identify_at_scale(ls, sizes=(2, 4), fpirs=fpirs, folds=3, aliases=False, synthetic=None)
    expected = np.sort(ls.emb[:, s.axes["g"]].astype(np.float64))[::-1]  # each photo's own w, once
    for size in (2, 4):
        rows = [r for r in rep.rows if r.gallery_size == size]
        assert all(r.nonmated_probes == n for r in rows)
        got = [r.measured.threshold for r in rows]
        assert got == pytest.approx([np.nextafter(x, np.inf) for x in expected[1:]], abs=1e-6)


def test_folds_deal_every_identity_once_and_mix_families():
    ls = clustered(7, 5, seed=3)
    parts = _folds(ls, 4, np.random.default_rng(0))
    flat = np.concatenate(parts)
    assert sorted(flat.tolist()) == list(range(len(ls.identities)))
    assert all(len(set(ls.families[p].tolist())) == 2 for p in parts)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


# ------------------------------------------------------------------ nested galleries, determinism
def nested_report(seed: int = 0, sizes=(3, 10, 30, 100, 300)):
    ls = clustered(15, 5, seed=1)
    return ls, identify_at_scale(ls, sizes=sizes, fpirs=(0.1, 0.02), folds=5, seed=seed, aliases=False)


def test_galleries_are_nested_fpir_at_a_fixed_threshold_never_falls_as_n_grows():
    ls, rep = nested_report()
    # 30 identities of 5 photos, 5 folds: 6 strangers, 3 enrolled, 21 others, one set of 3 photos each
    for target in (0.1, 0.02):
        rows = [r for r in rep.rows if r.target_fpir == target]
        assert [r.gallery_size for r in rows] == [3, 10, 30, 100, 300]
        fixed = [r.fpir_at_smallest_n_threshold for r in rows]
        assert len({f.threshold for f in fixed}) == 1 and fixed[0] == rows[0].measured
        assert all(a.false_positives <= b.false_positives for a, b in zip(fixed, fixed[1:]))
        assert fixed[-1].false_positives > fixed[0].false_positives  # 297 distractors must add some
        thr = [r.measured.threshold for r in rows]
        assert thr == sorted(thr)  # the threshold that holds FPIR can only rise with N
        for r in rows:  # real distractors first, then synthetic ones, summed over the 5 folds
            assert r.real_distractors == 5 * min(r.gallery_size - 3, 21)
            assert r.synthetic_distractors == 5 * (r.gallery_size - 3) - r.real_distractors
            assert r.synthetic_ok == (r.synthetic_distractors == 0 or rep.check.matches)
            assert r.nonmated_probes == len(ls.paths) and r.mated_probes == 5 * 3 * 2
    assert rep.check is not None and rep.check.rows
    assert {c.kind for c in rep.check.rows} == {"every photo", "per person"}


def test_a_seed_gives_the_same_report_and_another_seed_another():
    a = nested_report(0, sizes=(3, 30, 100))[1].to_dict()
    assert a == nested_report(0, sizes=(3, 30, 100))[1].to_dict()
    assert a != nested_report(1, sizes=(3, 30, 100))[1].to_dict()


def test_real_distractors_only_refuses_a_gallery_they_cannot_fill():
    ls = clustered(15, 5, seed=1)
    with pytest.raises(ValueError, match="synthetic distractors are not allowed"):
        identify_at_scale(ls, sizes=(3, 100), fpirs=(0.1,), folds=5, aliases=False, synthetic=None)
    rep = identify_at_scale(ls, sizes=(3, 24), fpirs=(0.1,), folds=5, aliases=False, synthetic=None)
    assert rep.check is None and rep.rows[-1].real_distractors == 5 * 21 and rep.rows[-1].synthetic_distractors == 0


def test_a_fold_without_enough_identities_to_enrol_is_an_error_not_a_hang():
    """4 identities, 2 folds: each fold's 2 strangers leave 2 to enrol, and 3 were asked for (this looped
    forever: the count check allowed for one enrolable stranger per fold only)."""
    def hang(*_):
        raise TimeoutError("identify_at_scale did not return")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(10)
    try:
        ls = photos(orthogonal_people({"aa": 2, "bb": 2}, 5, Space(30)))
        with pytest.raises(ValueError, match="fold 0: 2 identities outside its strangers"):
            identify_at_scale(ls, sizes=(3,), fpirs=(0.5,), folds=2, synthetic=None)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("kw, match", [
    (dict(sizes=(10, 5)), "increasing"), (dict(sizes=(3, 3)), "increasing"), (dict(fpirs=(1.0,)), r"\(0, 1\)"),
    (dict(enroll=0), "enroll"), (dict(count="people"), "count"), (dict(folds=1), "folds"),
    (dict(enrolled=4), "between 1 and the smallest"),
])
def test_bad_arguments_are_value_errors(kw, match):
    ls = photos(orthogonal_people({"aa": 3, "bb": 3}, 4, Space(40)))
    args = dict(sizes=(3, 10), fpirs=(0.5,), folds=2) | kw
    with pytest.raises(ValueError, match=match):
        identify_at_scale(ls, **args)


# ------------------------------------------------------------------ synthetic distractors: no stranger leaks in
def leaky(generator):
    """The same generator fitted on every identity, strangers included: what the protocol forbids."""
    def fit_on_everyone(ls, _identities, count, samples, rng):
        return generator(ls, np.arange(len(ls.identities)), count, samples, rng)
    return fit_on_everyone


@pytest.mark.parametrize("generator", [swap_distractors, gaussian_distractors])
def test_synthetic_distractors_are_fitted_on_the_distractor_identities_only(generator):
    """Every person orthogonal to every other: a synthetic person fitted to the distractors lies in their span,
    so a stranger scores 0 against all of them and nothing passes the promise threshold (0.0001: every impostor
    pair is 0). Fitted on the strangers too, the synthetic people carry the strangers' directions and do."""
    ls = photos(orthogonal_people({"aa": 6, "bb": 6}, 4, Space(80)))
    kw = dict(sizes=(2, 8, 50), fpirs=(0.5,), folds=3)
    rep = identify_at_scale(ls, synthetic=generator, **kw)
    assert rep.aliases == []
    for r in rep.rows:
        assert r.promise.threshold == pytest.approx(0.0001)
        assert r.promise.false_positives == 0
    assert rep.rows[-1].synthetic_distractors == 3 * (50 - 2 - 6) and rep.rows[-1].real_distractors == 3 * 6
    bad = identify_at_scale(ls, synthetic=leaky(generator), **kw)
    assert bad.rows[-1].promise.threshold == pytest.approx(0.0001)
    assert bad.rows[-1].promise.false_positives > 0  # the construction can tell: a leak changes the number


@pytest.mark.parametrize("generator", [swap_distractors, gaussian_distractors])
def test_generators_stay_in_the_span_of_the_identities_they_are_given(generator):
    ls = photos(orthogonal_people({"aa": 4, "bb": 4}, 4, Space(48)))
    given = np.array([0, 1, 2, 4, 5])  # identities 3, 6, 7 are not given
    out = generator(ls, given, 40, 3, np.random.default_rng(0))
    assert out.shape == (40, 3, ls.emb.shape[1]) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=-1), 1, atol=1e-5)
    others = ls.emb[np.isin(ls.ident, [3, 6, 7])]
    assert np.abs(out.reshape(-1, out.shape[-1]) @ others.T).max() < 1e-6
    inside = ls.emb[np.isin(ls.ident, given)]
    assert np.abs(out.reshape(-1, out.shape[-1]) @ inside.T).max() > 0.1
    again = generator(ls, given, 40, 3, np.random.default_rng(0))
    assert np.array_equal(out, again)


def test_synthetic_check_compares_inside_the_real_interval():
    real = np.linspace(0, 1, 1000)
    same = synthetic_check(real, real.copy(), 50)
    assert [r.level for r in same] == [0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001]
    assert all(r.within for r in same)
    low = synthetic_check(real, real - 0.2, 50)  # synthetic top scores short of the real ones: FPIR 0
    assert not any(r.within for r in low) and all(r.synthetic_fpir < r.real.lower for r in low)
    assert [r.level for r in synthetic_check(real[:150], real[:150], 50)] == [0.5, 0.2, 0.1, 0.05, 0.02, 0.01]


# ------------------------------------------------------------------ aliases: one person under two names
def alias_people() -> LabelledPhotos:
    s = Space(64)
    g = {
        # one person: same 0.81 / 0.64 / 0.72 across (0.9 * 0.8)
        "es_Barack_Obama": [s.v({"obama": 0.9, s.private(): math.sqrt(0.19)}) for _ in range(6)],
        "fr_obama": [s.v({"obama": 0.8, s.private(): 0.6}) for _ in range(4)],
        # two people close to each other: across 0.9 * 0.8 * 0.85 = 0.612 < 0.64
        "es_Tina_Fey": [s.v({"tina": 0.9, s.private(): math.sqrt(0.19)}) for _ in range(5)],
        "fr_tina": [s.v({"tina": 0.8 * 0.85, "tina2": 0.8 * math.sqrt(1 - 0.85 ** 2), s.private(): 0.6})
                    for _ in range(5)],
        # one person under two names in one family: labels within a family are trusted, never merged
        "es_twin_a": [s.v({"twin": 0.8, s.private(): 0.6}) for _ in range(4)],
        "es_twin_b": [s.v({"twin": 0.8, s.private(): 0.6}) for _ in range(4)],
    }
    for k in range(4):
        g[f"fr_other_{k}"] = [s.v({f"o{k}": 0.8, s.private(): 0.6}) for _ in range(4)]
    return photos(g)


def test_find_aliases_merges_one_person_across_families_and_nothing_else():
    ls = alias_people()
    found = find_aliases(ls)
    assert [(a.identity, a.alias) for a in found] == [("es_Barack_Obama", "fr_obama")]  # more photos keeps the name
    assert found[0].median_score == pytest.approx(0.72) and found[0].own_median == pytest.approx(0.64)
    merged = merge_aliases(ls, found)
    n = {name: len(merged.photos_of(k)) for k, name in enumerate(merged.identities)}
    assert n["es_Barack_Obama"] == 10 and n["fr_obama"] == 0 and n["fr_tina"] == 5 and n["es_twin_b"] == 4
    assert merged.identities == ls.identities and len(merged.paths) == len(ls.paths)
    assert np.all(np.diff(merged.ident) >= 0)  # still grouped by identity
    before = {p: tuple(e) for p, e in zip(ls.paths, ls.emb)}
    assert {p: tuple(e) for p, e in zip(merged.paths, merged.emb)} == before  # each photo keeps its embedding
    moved = {ls.paths[k] for k in ls.photos_of(ls.identities.index("fr_obama"))}
    assert moved < {merged.paths[k] for k in merged.photos_of(ls.identities.index("es_Barack_Obama"))}
    assert merge_aliases(ls, []) is ls


def test_aliases_chain_into_one_identity_whatever_their_order():
    """es/fr/it names of one person: three aliases (bb <- aa, aa <- cc, bb <- cc by photo count) must end as one
    identity, not leave cc's photos on aa, already merged away."""
    s = Space(20)
    ls = photos({name: [s.v({"p": 0.8, s.private(): 0.6}) for _ in range(n)]
                 for name, n in (("aa_x", 5), ("bb_x", 6), ("cc_x", 4))})
    found = find_aliases(ls)
    assert len(found) == 3
    for order in (found, found[::-1], [found[1], found[0], found[2]]):
        m = merge_aliases(ls, order)
        assert [len(m.photos_of(i)) for i in range(3)] == [0, 15, 0]


def test_identify_at_scale_merges_aliases_before_anything_is_counted():
    ls = alias_people()
    on = identify_at_scale(ls, sizes=(2, 5), fpirs=(0.5,), folds=3, synthetic=None)
    off = identify_at_scale(ls, sizes=(2, 5), fpirs=(0.5,), folds=3, synthetic=None, aliases=False)
    assert [(a.identity, a.alias) for a in on.aliases] == [("es_Barack_Obama", "fr_obama")] and off.aliases == []
    assert (on.identities, off.identities) == (len(ls.identities) - 1, len(ls.identities))
    assert off.impostor_pairs - on.impostor_pairs == 6 * 4  # Obama's 24 cross pairs are not impostors once merged
    assert any("fr_obama -> es_Barack_Obama" in n for n in on.notes)
    assert on.rows[0].nonmated_probes == off.rows[0].nonmated_probes == len(ls.paths)
    assert isinstance(on.aliases[0], Alias)


# ------------------------------------------------------------------ the tool: bad input is one line, exit 2
@pytest.mark.parametrize("extra, names", [
    (["--sizes", "abc"], "--sizes"),
    (["--fpirs", "0.01,x"], "--fpirs"),
    (["--cache", "{tmp}/not-a-dir"], "--cache"),
    (["--root", "{tmp}/no-such-root"], "--root"),
])
def test_tool_bad_input_is_one_line_exit_2(tmp_path, extra, names):
    extra = [x.format(tmp=tmp_path) for x in extra]
    args = extra if extra[0] == "--root" else ["--root", str(tmp_path / "no-such-root"), *extra]
    p = subprocess.run([sys.executable, str(REPO / "tools" / "identify_scale.py"), *args], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("identify_scale: error: "), p.stderr
    assert names in lines[0] and "Traceback" not in p.stderr
