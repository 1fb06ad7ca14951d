"""Pure evaluation metrics (numpy only, no models), so they can be checked against hand-computed cases.

Conventions: higher score = more similar; a pair/probe is accepted when ``score >= threshold``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

@dataclass(frozen=True)
class Margins:
    """Score margins added above the thresholds the calibration data supports, for people it does not hold.

    Why: FAR at a threshold is set by which look-alike pairs of people a data set happens to hold, and no bound
    computed on the calibration identities sees the look-alikes among other people. Derived, not guessed: on 100
    random identity halves (``python tools/threshold_splits.py [--rule track] --profile P --root
    ../shared/data/faces/wild_dev/ids --root ../shared/data/faces/lab_dev/ids --derive 100``, README "Accuracy"),
    how far above the threshold one half was calibrated to (FAR bound, then FPIR at N=5; no margin) the other,
    unseen half needed to be for FAR 1e-3 and FPIR 1-(1-1e-3)^5; the margin is the smallest 3-decimal value that
    covers 99 of the 100 splits on wild_dev (votes: 99 % of 300). Per profile, because each profile's score has its own scale.
    """

    photo: float  # one photo pair (the per-photo threshold)
    track: float  # the track rule (a track's mean embedding against a person's template)
    votes: float  # the votes rule's own threshold (the matching.votes-th best look of a pass against a person)
    derivation: str


#: (Here, not in ``calibrate``, so the CLI can show it in --help without importing the calibration code.)
MARGINS: dict[str, Margins] = {
    # dlib: photo 95 % +0.0118, max +0.0131 (lab_dev 0.0076 / 0.0140): 0.013 covers 99 of 100 (lab_dev 98).
    # Track (k=3, passes of 5 scored from 2, 200 draws): median -0.0054, 95 % +0.0228, 99 % +0.0249, max +0.0262;
    # lab_dev 95 % +0.0131, 99 % +0.0212. About twice the photo margin: means of looks separate most people
    # further, so the few look-alike pairs a half holds or lacks (wild_dev's es_ family) decide its pass threshold
    # more than they decide a photo threshold.
    # Votes as run (k=3, passes of 10 scored by the best look, 200 draws; tools/threshold_splits.py --rule votes-live
    # --min-chips 1 --derive 300): median -0.0019, 95 % +0.0142, 99 % +0.0176, max +0.0246 (scored from the 2nd best
    # look, 100 splits: 99 % +0.024).
    "fast": Margins(photo=0.013, track=0.025, votes=0.018, derivation="wild_dev identity halves, 99 of 100 splits"),
    # Fused dlib + FaceNet (weights of engines/profiles.py): photo median -0.0125, 95 % +0.0282, 99 % +0.0295,
    # max +0.0380; track median -0.0057, 95 % +0.0589, 99 % +0.0657, max +0.0663. Wider than dlib's: the fused
    # score spreads look-alike pairs and other pairs further apart, so which look-alikes a half holds moves its
    # threshold more.
    # Votes as run (as for fast, 300 splits): median -0.0096, 95 % +0.0467, 99 % +0.0502, max +0.0536 (2nd best
    # look, 100 splits: +0.062). Without it, votes at the per-photo threshold
    # broke the per-track claim on 3 of 10 unseen wild_dev halves (up to 3.6 % pass FAR): ten looks give a
    # look-alike ten chances, and the photo margin does not cover that.
    "accurate": Margins(photo=0.030, track=0.066, votes=0.051, derivation="wild_dev identity halves, 99 of 100 splits"),
    # ArcFace MobileFaceNet (cosine of 512-d unit vectors: impostors near 0, the threshold near 0.3-0.4). Photo
    # (wild_dev + lab_dev roots, 100 splits): median -0.0086, 95 % +0.0773, 99 % +0.0829, max +0.0922. Track
    # (wild_dev): median -0.0312, 95 % +0.1443, 99 % +0.1626. Votes as run (300 splits): median -0.0151, 95 % +0.0825,
    # 99 % +0.1019, max +0.1071. Wider than dlib's in cosine, but its genuine scores sit much further above
    # (README Accuracy: TAR at the margined thresholds).
    "arcface": Margins(photo=0.083, track=0.163, votes=0.102, derivation="wild_dev identity halves, 99 of 100 splits"),
}


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
    just above d[k] (one float64 step). Returns (threshold, achieved rate). Compare scores with it in float64
    (:func:`accepts`): against a float32 array NumPy casts the Python float down, back onto d[k].
    """
    d = np.sort(np.asarray(negatives, dtype=np.float64))[::-1]
    n = len(d)
    k = int(np.floor(target * n + 1e-9))
    if k >= n:
        return float(d[-1]), 1.0
    thr = float(np.nextafter(d[k], np.inf))
    return thr, float(np.mean(d >= thr))


def accepts(scores: np.ndarray, threshold: float) -> np.ndarray:
    """``scores >= threshold`` in float64, whatever the scores' dtype (see :func:`threshold_at_false_rate`)."""
    return np.asarray(scores, dtype=np.float64) >= threshold


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> RateAt:
    """True-accept rate at a target false-accept rate; refuses when impostors are too few to measure it."""
    impostor = np.asarray(impostor)
    if len(impostor) * far < 1:
        return RateAt(far, None, None, None, f"too few impostor pairs ({len(impostor)}) to measure FAR {far:g}: need >= {int(np.ceil(1 / far))}")
    thr, achieved = threshold_at_false_rate(impostor, far)
    return RateAt(far, float(np.mean(accepts(genuine, thr))), thr, achieved)


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
    hit = np.asarray(mated_correct, bool) & accepts(mated_scores, thr)
    return RateAt(fpir, float(1 - hit.mean()), thr, achieved)


def per_comparison_far_for_gallery(fpir: float, gallery_size: int) -> float:
    """FAR per 1:1 comparison that gives ``fpir`` against N independent identities: 1 - (1 - fpir)^(1/N).

    Why: a non-mated probe is falsely identified when any of N comparisons passes, so the same threshold
    gives FPIR ~ N * FAR; the threshold must rise with N to keep FPIR fixed.
    """
    return 1.0 - (1.0 - fpir) ** (1.0 / max(gallery_size, 1))


# ------------------------------------------------------------------ confidence: what the data can promise
#: Confidence of every interval and bound in facewatch's reports (exact binomial, Clopper-Pearson).
CONFIDENCE = 0.95


def _log_binom_cdf(k: int, n: int, p: float) -> float:
    """log P(X <= k) for X ~ Binomial(n, p), summed exactly over the shorter tail (numpy + log-gamma only).

    Why not a normal approximation: the rates that matter here are 0-10 false accepts in thousands of
    trials, where the normal approximation is worst.
    """
    if k < 0:
        return -math.inf
    if k >= n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return -math.inf
    if k > n // 2:  # the upper tail is shorter: P(X <= k) = 1 - P(Y <= n-k-1), Y ~ Bin(n, 1-p)
        tail = math.exp(_log_binom_cdf(n - k - 1, n, 1.0 - p))
        return math.log1p(-tail) if tail < 1.0 else -math.inf
    i = np.arange(1, k + 1, dtype=np.float64)
    log_choose = np.r_[0.0, np.cumsum(np.log((n - i + 1) / i))]  # log C(n, 0..k)
    j = np.arange(k + 1, dtype=np.float64)
    terms = log_choose + j * math.log(p) + (n - j) * math.log1p(-p)
    top = float(terms.max())
    return top + math.log(float(np.exp(terms - top).sum()))


def _solve_p(f, target: float) -> float:
    """The p in (0, 1) where the decreasing function ``f(p)`` crosses ``target``, by bisection (to ~1e-15 relative)."""
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if f(mid) > target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * hi:
            break
    return 0.5 * (lo + hi)


def binomial_interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact (Clopper-Pearson) confidence interval for a rate seen ``k`` times in ``n`` independent trials.

    Two-sided, (1 - confidence)/2 on each side. At ``k == 0`` the lower end is certainly 0, so the whole
    1 - confidence goes to the upper end: 1 - (1 - confidence)^(1/n), the "rule of three" (~3/n at 95%); the
    same at ``k == n`` mirrored. That is the bound a calibration with zero false accepts can claim, and it makes
    0 of 3000 -> (0, 0.000998) and 7 of 1500 -> (0.0019, 0.0096).
    """
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= k <= n:
        raise ValueError(f"k={k} outside 0..n={n}")
    alpha = 1.0 - confidence
    if k == 0:
        return 0.0, -math.expm1(math.log(alpha) / n)
    if k == n:
        return math.exp(math.log(alpha) / n), 1.0
    log_a2 = math.log(alpha / 2)
    # upper: P(X <= k | p) = alpha/2; lower: P(X >= k | p) = alpha/2, i.e. P(X <= k-1 | p) = 1 - alpha/2
    upper = _solve_p(lambda p: _log_binom_cdf(k, n, p), log_a2)
    lower = _solve_p(lambda p: _log_binom_cdf(k - 1, n, p), math.log1p(-alpha / 2))
    return lower, upper


def rate_upper_bound(k: int, n: int, confidence: float = CONFIDENCE) -> float:
    """Upper end of :func:`binomial_interval` (computed alone): the highest rate consistent with k of n."""
    if n <= 0 or k >= n:
        return 1.0
    if k == 0:
        return binomial_interval(0, n, confidence)[1]
    return _solve_p(lambda p: _log_binom_cdf(k, n, p), math.log((1.0 - confidence) / 2))


def supportable_rate(n: int, confidence: float = CONFIDENCE) -> float:
    """The smallest false rate ``n`` trials can support, reached with zero false accepts: 1 - (1-conf)^(1/n)."""
    return -math.expm1(math.log(1.0 - confidence) / n) if n > 0 else 1.0


def trials_needed(target: float, confidence: float = CONFIDENCE) -> int:
    """How many trials a claim of ``target`` needs at least (with zero false accepts among them)."""
    return int(math.ceil(math.log(1.0 - confidence) / math.log1p(-target)))


def round_up_above(score: float, decimals: int = 4) -> float:
    """The shortest ``decimals``-digit number strictly above ``score``.

    Why: a threshold printed as 4 digits must still exclude the impostor it was placed above; ``round()`` can
    land below it (0.92815 -> 0.9281 would accept that impostor). Rounding up, then checking, cannot.
    """
    scale = 10 ** decimals
    m = math.ceil(score * scale)
    while m / scale <= score:
        m += 1
    return m / scale


@dataclass(frozen=True)
class Bounded:
    """A threshold and the false rate measured at it, with the exact interval (``score >= threshold`` accepts)."""

    threshold: float
    false_accepts: int
    trials: int
    rate: float
    lower: float
    upper: float
    target: float
    meets_target: bool  # upper <= target
    supportable: float  # the lowest claim these trials could support (zero false accepts)


def rate_at(negatives: np.ndarray, threshold: float, target: float = 1.0,
            confidence: float = CONFIDENCE) -> Bounded:
    """False accepts of ``negatives`` at ``threshold``, with the exact interval."""
    neg = np.asarray(negatives, dtype=np.float64)
    n = len(neg)
    k = int(np.count_nonzero(neg >= threshold))
    lo, hi = binomial_interval(k, n, confidence)
    return Bounded(float(threshold), k, n, k / n if n else 0.0, lo, hi, target, hi <= target,
                   supportable_rate(n, confidence))


class TooFewTrials(ValueError):
    """The data cannot support the target rate at this confidence; ``supportable`` says what it can."""

    def __init__(self, message: str, trials: int, supportable: float, needed: int) -> None:
        super().__init__(message)
        self.trials, self.supportable, self.needed = trials, supportable, needed


def bounded_threshold(negatives: np.ndarray, target: float, *, confidence: float = CONFIDENCE, decimals: int = 4,
                      allow_weak: bool = False, floor: float = -math.inf, what: str = "impostor pairs",
                      rate_name: str = "FAR", ceiling: float | None = 1.0) -> Bounded:
    """Lowest ``decimals``-digit threshold (>= ``floor``) at which the UPPER end of the exact interval of the
    false rate on ``negatives`` is <= ``target``.

    Why the upper end and not the measured rate: with n negatives a measured 0.1 % can be a true 0.3 %; the
    threshold must keep its promise on the next n faces, not describe these ones. When even zero false accepts
    cannot meet the target (n < ln(0.05)/ln(1 - target), ~3/target), this raises :class:`TooFewTrials` naming
    the rate the data can support; with ``allow_weak`` it returns the threshold above every negative instead
    (``meets_target`` False). ``ceiling``: the highest threshold there is (cosine: 1; None for other scores).
    """
    neg = np.sort(np.asarray(negatives, dtype=np.float64))[::-1]
    n = len(neg)
    if n == 0:
        raise TooFewTrials(f"no {what}: a threshold cannot be calibrated without them", 0, 1.0, trials_needed(target, confidence))
    weakest = supportable_rate(n, confidence)
    if weakest > target and not allow_weak:
        raise TooFewTrials(
            f"{n} {what} cannot support {rate_name} {target:g} at {confidence:.0%} confidence: even with none accepted "
            f"the upper bound is {weakest:.3g}; the lowest {rate_name} this data can support is {weakest:.3g} "
            f"(needs >= {trials_needed(target, confidence)} {what} for {target:g})",
            n, weakest, trials_needed(target, confidence))
    # largest k (accepted negatives) whose upper bound meets the target; upper(k) grows with k
    lo, hi = 0, 0
    if rate_upper_bound(0, n, confidence) <= target:
        hi = min(n - 1, int(math.ceil(target * n)))  # the upper bound is above k/n, so k < target * n
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if rate_upper_bound(mid, n, confidence) <= target:
                lo = mid
            else:
                hi = mid - 1
    k = lo
    thr = max(round_up_above(float(neg[k]), decimals), floor)
    if ceiling is not None and thr > ceiling:
        raise TooFewTrials(f"{what} score {neg[k]:.6f}, at the top of the cosine range: no threshold <= 1 excludes it "
                           "(the same photo under two names?)", n, weakest, trials_needed(target, confidence))
    return rate_at(neg, thr, target, confidence)


def fpir_for_far(far: float, gallery_size: int) -> float:
    """FPIR the formula predicts from a per-comparison FAR at gallery size N: 1 - (1 - FAR)^N.

    A prediction only: it assumes the N comparisons are independent, and look-alikes make them not so; the
    measured FPIR (:func:`stream.eval.identify.open_set_scores`) wins where they disagree.
    """
    return -math.expm1(max(gallery_size, 1) * math.log1p(-far))


def verdict(lower: float, upper: float, claim: float | None) -> str:
    """A claim against a measurement's interval: ``kept`` (the whole interval is at or under the claim),
    ``broken`` (the whole interval is above it), ``consistent`` (the interval straddles it: this data can
    neither confirm nor refute the claim), or ``no claim``."""
    if claim is None:
        return "no claim"
    if upper <= claim:
        return "kept"
    return "broken" if lower > claim else "consistent"


def at_threshold(threshold: float, far_claim: float | None, gallery_size: int, *, tar: float | None,
                 genuine: int, tar_kind: str, far: Bounded | None, fpir: dict) -> dict:
    """The one ``at_threshold`` object of ``eval verify`` / ``eval identify``: what the configured threshold
    does on this data (TAR, FAR with its interval, FPIR at the configured gallery size) next to what the config
    claims, and a verdict for each claim."""
    n = fpir.get("measured_at") or gallery_size
    fpir_claim = fpir_for_far(far_claim, n) if far_claim else None
    out = {
        "threshold": threshold, "far_claimed": far_claim, "gallery_size": gallery_size, "tar": tar, "tar_kind": tar_kind,
        "genuine": genuine, "far": far.rate if far else None, "far_interval": [far.lower, far.upper] if far else None,
        "false_accepts": far.false_accepts if far else None, "impostors": far.trials if far else 0,
        "far_verdict": verdict(far.lower, far.upper, far_claim) if far else "not measured",
        "fpir": fpir.get("fpir"), "fpir_interval": fpir.get("interval"), "fpir_gallery_size": fpir.get("measured_at"),
        "fpir_claimed": fpir_claim, "fpir_method": fpir.get("method", "measured"),
        "nonmated_probes": fpir.get("nonmated_probes"),
        "fpir_verdict": (verdict(*fpir["interval"], fpir_claim) if fpir.get("interval") else "not measured"),
        "note": fpir.get("note", ""),
    }
    return out


def at_threshold_line(a: dict) -> str:
    """``at_threshold`` as the one human line."""
    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3%}"
    claim = (f"claims FAR {pct(a['far_claimed'])}, FPIR {pct(a['fpir_claimed'])} at N={a['fpir_gallery_size'] or a['gallery_size']}"
             if a["far_claimed"] else "no FAR claim in the config")
    far = (f"FAR {pct(a['far'])} [{pct(a['far_interval'][0])}-{pct(a['far_interval'][1])}] "
           f"({a['false_accepts']}/{a['impostors']}, {a['far_verdict']})" if a["far_interval"] else "FAR not measured")
    fpir = (f"FPIR {pct(a['fpir'])} [{pct(a['fpir_interval'][0])}-{pct(a['fpir_interval'][1])}] at "
            f"N={a['fpir_gallery_size']} ({a['fpir_method']}, {a['fpir_verdict']})" if a["fpir_interval"]
            else f"FPIR not measured ({a['note']})")
    return (f"at threshold {a['threshold']:.4f} ({claim}): TAR {pct(a['tar'])} ({a['tar_kind']}), {far}, {fpir}"
            + (f"; {a['note']}" if a["note"] and a["fpir_interval"] else ""))
