"""Thresholds from data that keep their promise, and writing them into a config file.

Two rules, one policy (README "Accuracy"). The per-photo threshold (one photo against one enrolled sample: verify,
identify, the votes rule) is calibrated on every cross-identity photo pair of the labelled folder (a seeded sample
when there are millions); the track threshold (the rule that decides a track live: a track's mean embedding
against a person's template, ``engines.aggregate``) on pass-level trials built from the same photos
(:mod:`stream.eval.passes`). For each: the lowest 4-digit threshold at which the UPPER end of the exact 95 %
interval of the measured false-accept rate is <= the target; FPIR then measured on open-set galleries of N
identities (the configured watchlist size for 1:1) and the measurement wins over the formula 1 - (1 - FAR)^N;
a score margin for the people the data does not hold goes on last (``MARGINS[profile].photo`` for photos, ``.track``
for tracks, each derived from identity halves of wild_dev). For 1:N the per-comparison FAR comes from
1 - (1 - FPIR)^(1/N). Too few impostors for the target is a refusal naming what the data can support, never a
threshold that only describes the trials it was fitted on.
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Callable

import numpy as np
from ruamel.yaml import YAML, YAMLError
from ruamel.yaml.comments import CommentedMap

from engines.aggregate import RULE
from stream.config import LEGACY_KEYS, Calibration, ConfigError, load_config

from stream.eval.identify import OpenSet, largest_measurable_gallery, open_set
from stream.eval.passes import (COHORT_NORM_MARGIN, PassError, PassTrials, cohort_normalised,
                                pass_summary)
from stream.eval.photos import LabelledPhotos, genuine_scores, impostor_scores
from stream.eval.rates import (MARGINS, CONFIDENCE, Bounded, TooFewTrials, bounded_threshold, fpir_for_far,
                               per_comparison_far_for_gallery, rate_at)


def _bounded(b: Bounded) -> dict:
    return {"threshold": b.threshold, "false": b.false_accepts, "trials": b.trials, "rate": b.rate,
            "interval": [b.lower, b.upper], "target": b.target, "meets_target": b.meets_target}


def _round(x: float, ceiling: float | None) -> float:
    return round(x, 4) if ceiling is None else min(round(x, 4), ceiling)


def split_identities(ls: LabelledPhotos, fraction: float, seed: int = 0, within_families: bool = False,
                     identities: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(calibration identities, held-out identities): a seeded random ``fraction`` of the identities held out.

    With ``within_families`` each family is split on its own (so both parts keep every family's kind of photo);
    a family's share rounds at random up or down, so ``fraction`` holds on average.
    """
    ids = np.arange(len(ls.identities)) if identities is None else np.asarray(identities)
    fam = ls.families if within_families else np.array(["all"] * len(ls.identities))
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for f in sorted(set(fam[ids])):
        members = ids[fam[ids] == f].copy()
        rng.shuffle(members)
        share = fraction * len(members)
        h = int(math.floor(share) + (rng.random() < share - math.floor(share)))
        held += list(members[:h])
        keep += list(members[h:])
    return np.array(sorted(keep), dtype=np.int64), np.array(sorted(held), dtype=np.int64)


# ------------------------------------------------------------------ the policy, for any score and any open set
def _fpir_measured(os_: OpenSet | None, threshold: float, *, gallery_size: int, largest: int, who: str,
                   far_claim: float | None) -> dict:
    """FPIR at ``threshold`` on the open set of N (``gallery_size``, or the largest the data allows, said so)."""
    n = min(gallery_size, largest)
    if os_ is None or n < 1:
        return {"gallery_size": gallery_size, "measured_at": None, "fpir": None, "interval": None,
                "note": f"no {who} holds 2 identities: FPIR cannot be measured"}
    b = os_.fpir_at(threshold)
    out = {"gallery_size": gallery_size, "measured_at": n, "fpir": b.rate, "interval": [b.lower, b.upper],
           "false_positives": b.false_accepts, "nonmated_probes": b.trials, "tpir": os_.tpir_at(threshold),
           "claimed": fpir_for_far(far_claim, n) if far_claim else None, "note": ""}
    if n < gallery_size:
        out["note"] = (f"measured at N={n}: the largest {who} has {largest + 1} identities, and a gallery of "
                       f"{gallery_size} needs {gallery_size + 1}")
    return out


def _policy(imp: np.ndarray, target: float, *, gallery_size: int | None, check_gallery_size: int, margin: float,
            largest: int, make_open_set: Callable[[int], OpenSet], allow_weak: bool, confidence: float, what: str,
            who: str, members: str = "identities", ceiling: float | None = 1.0) -> dict:
    """The calibration rule on one kind of trial: the FAR bound on ``imp``, FPIR measured at N on
    ``make_open_set(N)`` (raised until its bound meets the claim), then ``margin``. ``largest``: the largest N the
    data can measure; ``who``: what holds a gallery ("family", "family with templates") and ``members`` what it holds,
    for messages."""
    far_target = per_comparison_far_for_gallery(target, gallery_size) if gallery_size else target
    warnings: list[str] = []
    base = bounded_threshold(imp, far_target, confidence=confidence, allow_weak=allow_weak, what=what, ceiling=ceiling)
    if not base.meets_target:
        warnings.append(f"WEAK: {base.trials} {what} cannot support FAR {far_target:.3g}; the lowest FAR they "
                        f"support is {base.supportable:.3g}, so that is all this threshold claims")
    supported = base.threshold  # what the calibration data supports, before the margin
    formula = {"per_comparison_far": far_target, "threshold": _round(supported + margin, ceiling)}
    # FPIR is checked at the watchlist size: the target itself with --gallery-size (a refusal when it cannot be
    # checked), else the FPIR the FAR target predicts at the configured size (skipped, said so, when it cannot be).
    n_check = gallery_size or check_gallery_size
    fpir_target = target if gallery_size else fpir_for_far(target, n_check)
    fpir: dict = {"gallery_size": n_check, "target": fpir_target}
    os_: OpenSet | None = None
    if largest < n_check:
        msg = (f"FPIR at gallery size {n_check} cannot be checked on this data: the largest {who} has "
               f"{largest + 1} {members}, and a gallery of {n_check} plus a stranger needs {n_check + 1}")
        if gallery_size and not allow_weak:
            raise TooFewTrials(msg + " (--allow-weak uses the formula's threshold unchecked)", 0, 1.0, n_check + 1)
        if gallery_size:
            warnings.append("WEAK: " + msg + "; the formula's threshold is used unchecked")
        fpir["verdict"] = "not checked: " + msg
    else:
        os_ = make_open_set(n_check)
        at_formula = os_.fpir_at(supported, fpir_target, confidence)
        fpir.update(formula=_bounded(at_formula), verdict="the measurement confirms the formula")
        if not at_formula.meets_target:
            try:
                raised = os_.threshold_for(fpir_target, floor=supported, confidence=confidence)
            except TooFewTrials as exc:
                why = (f"at gallery size {n_check} the formula's threshold {supported:.4f} gives a measured FPIR upper "
                       f"bound of {at_formula.upper:.3g} > {fpir_target:.3g}, and {exc}")
                if gallery_size and not allow_weak:
                    raise TooFewTrials(why, exc.trials, exc.supportable, exc.needed) from None
                if gallery_size:
                    warnings.append(f"WEAK: {why}")
                fpir["verdict"] = "not checked: " + why
            else:
                fpir["verdict"] = (f"the measurement overrules the formula: at {supported:.4f} the measured FPIR upper "
                                   f"bound at N={n_check} is {at_formula.upper:.3g} > {fpir_target:.3g}, so the threshold "
                                   f"was raised to {raised.threshold:.4f} (before the margin)")
                supported = raised.threshold
    thr = _round(supported + margin, ceiling)
    if os_ is not None:
        fpir["final"] = _bounded(os_.fpir_at(thr, fpir_target, confidence))
    at = rate_at(imp, thr, far_target, confidence)
    claim = max(far_target, base.supportable) if not base.meets_target else far_target
    return {
        "threshold": thr, "target": target, "gallery_size": gallery_size, "per_comparison_far": claim,
        "margin": margin, "threshold_before_margin": supported, "far_threshold": base.threshold, "confidence": confidence,
        "impostors": at.trials, "false_accepts": at.false_accepts, "far": at.rate, "far_interval": [at.lower, at.upper],
        "far_upper": at.upper, "supportable_far": base.supportable, "formula": formula, "fpir_check": fpir,
        "fpir": _fpir_measured(os_ if os_ is not None else (make_open_set(min(n_check, largest)) if largest >= 1 else None),
                               thr, gallery_size=n_check, largest=largest, who=who, far_claim=claim),
        "weak": bool(warnings), "warnings": warnings,
    }


# ------------------------------------------------------------------ the per-photo rule
def measure_at(ls: LabelledPhotos, threshold: float, *, identities: np.ndarray | None = None, gallery_size: int = 10,
               enroll: int = 3, within_families: bool = False, max_pairs: int = 5_000_000, seed: int = 0,
               far_claim: float | None = None) -> dict:
    """FAR (with interval) on every cross-identity pair, TAR on every same-identity pair, and FPIR at the gallery
    size (or the largest one the identities allow) of ``identities`` at ``threshold``: what a threshold does to
    people it was not calibrated on (``--holdout-identities``, tools/threshold_splits.py)."""
    imp, available = impostor_scores(ls, identities, within_families=within_families, max_pairs=max_pairs, seed=seed)
    gen = genuine_scores(ls, identities, max_pairs=max_pairs, seed=seed)
    out: dict = {"identities": int(len(ls.identities) if identities is None else len(identities)),
                 "impostor_pairs": int(len(imp)), "genuine_pairs": int(len(gen)),
                 "tar": float(np.mean(gen >= threshold)) if len(gen) else None}
    if len(imp):
        far = rate_at(imp, threshold, far_claim or 1.0)
        out.update(far=far.rate, far_interval=[far.lower, far.upper], false_accepts=far.false_accepts)
    else:
        out.update(far=None, far_interval=None, false_accepts=None)
    out["fpir"] = fpir_report(ls, threshold, gallery_size=gallery_size, enroll=enroll, identities=identities,
                              within_families=within_families, far_claim=far_claim)
    return out


def fpir_report(ls: LabelledPhotos, threshold: float, *, gallery_size: int, enroll: int = 3,
                identities: np.ndarray | None = None, within_families: bool = False,
                far_claim: float | None = None) -> dict:
    """FPIR measured at ``threshold`` over every gallery of N identities (N = ``gallery_size``, or the largest the
    data allows, said so), with its interval and the FPIR the claimed per-comparison FAR predicts at that N."""
    largest = largest_measurable_gallery(ls, identities, within_families)
    n = min(gallery_size, largest)
    os_ = open_set(ls, n, enroll, identities, within_families) if n >= 1 else None
    out = _fpir_measured(os_, threshold, gallery_size=gallery_size, largest=largest, who="family", far_claim=far_claim)
    if os_ is None:
        out["note"] = "no family has 2 identities: FPIR cannot be measured"
    return out


def calibrate_threshold(ls: LabelledPhotos, target: float, *, gallery_size: int | None = None,
                        check_gallery_size: int = 10, margin: float = MARGINS["fast"].photo, enroll: int = 3,
                        within_families: bool = False, identities: np.ndarray | None = None,
                        max_pairs: int = 5_000_000, seed: int = 0, allow_weak: bool = False,
                        genuine: np.ndarray | None = None, confidence: float = CONFIDENCE) -> dict:
    """The per-photo threshold for a target FAR (1:1) or, with ``gallery_size``, a target FPIR at that N.

    The lowest 4-digit threshold whose FAR upper bound on every cross-identity pair is <= the per-comparison
    target (``target`` for 1:1; 1 - (1 - FPIR)^(1/N) for 1:N), then FPIR measured on every gallery of N identities
    (N = ``gallery_size``, else ``check_gallery_size``, the configured watchlist size, against the FPIR the FAR
    target predicts there): when its upper bound misses, the threshold is raised until it meets it (the report
    says the formula was overruled); the margin goes on top. Why check 1:1 calibrations at N too: the
    threshold is used against a watchlist, where look-alikes and several samples per person make FPIR grow faster
    than the formula says. Raises :class:`TooFewTrials` (the data cannot support the
    target; the message names what it can support) unless ``allow_weak``, which proceeds and lists why in
    ``warnings``. ``genuine``: TAR's same-identity scores (a pairs file's), else every same-identity pair.
    """
    imp, available = impostor_scores(ls, identities, within_families=within_families, max_pairs=max_pairs, seed=seed)
    what = "impostor pairs" + (" (within families)" if within_families else "")
    largest = largest_measurable_gallery(ls, identities, within_families)
    res = _policy(imp, target, gallery_size=gallery_size, check_gallery_size=check_gallery_size, margin=margin,
                  largest=largest, make_open_set=lambda n: open_set(ls, n, enroll, identities, within_families),
                  allow_weak=allow_weak, confidence=confidence, what=what,
                  who="family" if within_families else "folder", members="identities with a face")
    gen = genuine if genuine is not None else genuine_scores(ls, identities, max_pairs=max_pairs, seed=seed)
    ids_used = len(ls.identities) if identities is None else len(identities)
    res.update({
        "identities": ids_used, "photos": int(len(ls.paths) if identities is None else np.isin(ls.ident, identities).sum()),
        "photos_without_face": len(ls.failed), "within_families": within_families,
        "impostor_pairs_available": available, "sampled": available > res["impostors"],
        "tar": float(np.mean(gen >= res["threshold"])) if len(gen) else None, "genuine_pairs": int(len(gen)),
    })
    return res


# ------------------------------------------------------------------ the track rule
def measure_tracks_at(trials: PassTrials, threshold: float, *, gallery_size: int = 10,
                      far_claim: float | None = None) -> dict:
    """Pass FAR (with interval), TAR over the genuine passes and FPIR at N (every gallery of N templates) at
    ``threshold``: what a track threshold does on ``trials`` (an unseen identity half's, for ``--holdout-identities``)."""
    imp, gen = trials.impostors(), trials.genuine()
    out: dict = {"impostor_passes": int(len(imp)), "genuine_passes": int(len(gen)),
                 "tar": float(np.mean(gen >= threshold)) if len(gen) else None}
    if len(imp):
        far = rate_at(imp, threshold, far_claim or 1.0)
        out.update(far=far.rate, far_interval=[far.lower, far.upper], false_accepts=far.false_accepts)
    else:
        out.update(far=None, far_interval=None, false_accepts=None)
    largest = trials.largest_gallery()
    n = min(gallery_size, largest)
    out["fpir"] = _fpir_measured(trials.open_set(n) if n >= 1 else None, threshold, gallery_size=gallery_size,
                                 largest=largest, who="family", far_claim=far_claim)
    return out


def calibrate_track(trials: PassTrials, target: float, *, gallery_size: int | None = None,
                    check_gallery_size: int = 10, margin: float = MARGINS["fast"].track, allow_weak: bool = False,
                    confidence: float = CONFIDENCE) -> dict:
    """The track threshold: :func:`calibrate_threshold`'s policy on pass trials (:mod:`stream.eval.passes`).

    The lowest 4-digit threshold whose exact upper bound on the pass FAR (every impostor pass, prefix-max score)
    is <= the per-pass target; FPIR measured over every gallery of N templates (a non-mated pass against each,
    the max taken) and the threshold raised until its bound meets 1 - (1 - FAR)^N (or the FPIR target with
    ``gallery_size``); then ``margin``, derived for this rule (``MARGINS[profile].track``). Normalised scores (cohort)
    have no ceiling of 1.
    """
    what = "impostor passes" + (" (within families)" if trials.within_families else "")
    res = _policy(trials.impostors(), target, gallery_size=gallery_size, check_gallery_size=check_gallery_size,
                  margin=margin, largest=trials.largest_gallery(), make_open_set=trials.open_set,
                  allow_weak=allow_weak, confidence=confidence, what=what,
                  who="family" if trials.within_families else "folder", members="identities with a template",
                  ceiling=None if trials.normalised else 1.0)
    gen = trials.genuine()
    res.update(rule=RULE, passes=pass_summary(trials), genuine_passes=int(len(gen)),
               tar=float(np.mean(gen >= res["threshold"])) if len(gen) else None)
    res["promise"] = track_promise(res)
    return res


def track_promise(t: dict) -> str:
    """The track rule's promise in words: what a stranger's track risks on a watchlist of N, and how it is backed."""
    check, f = t["fpir_check"], t["fpir"]
    n = check["gallery_size"]
    conf = f"{t['confidence']:.0%}"
    claim = check["target"]
    if "final" in check and check["final"]["meets_target"]:
        backed = (f"measured over every gallery of {n} templates: {f['fpir']:.3%} of {f['nonmated_probes']} non-mated "
                  f"passes, 95% upper {f['interval'][1]:.3%}")
    elif f.get("fpir") is not None:
        backed = (f"FPIR could not be checked at N={n} on this data; {f['note'] or 'measured'}: {f['fpir']:.3%}, 95% upper "
                  f"{f['interval'][1]:.3%}; at N={n} the formula 1-(1-FAR)^N only")
    else:
        backed = f"FPIR could not be measured on this data ({f['note']}): the formula 1-(1-FAR)^N only"
    return (f"a track of a person not enrolled is named as someone on a watchlist of {n} with probability <= "
            f"{claim:.3%} at {conf} confidence ({backed}); against one given enrolled person, with probability <= "
            f"{t['per_comparison_far']:.3%} per track (pass FAR 95% upper {t['far_upper']:.4%} at {t['threshold']:.4f}, "
            f"{t['impostors']} impostor passes)" + ("; WEAK" if t["weak"] else ""))


def measure_votes(trials: PassTrials, res: dict, margin: float) -> dict:
    """The votes rule's threshold and its promise per track, on the votes-scored passes (``pass_trials(rule=
    "votes")``): the rule calibrated on them like the track rule (FAR bound, FPIR at N, then ``margin`` for people
    the data does not hold), and never below the per-photo threshold ``res["threshold"]``. Why its own: a track
    gives a look-alike up to ``matching.max_embeddings_per_track`` chances, and the per-photo margin does not cover
    that (measured: votes at the accurate per-photo threshold broke the per-track claim on 3 of 10 unseen
    identity halves; README Accuracy). Then pass FAR (bound), FPIR at N and TAR at the threshold used."""
    n = res["gallery_size"] or res["fpir_check"]["gallery_size"]
    own = calibrate_track(trials, res["target"], margin=margin, gallery_size=res["gallery_size"],
                          check_gallery_size=res["fpir_check"]["gallery_size"], allow_weak=True)
    thr = max(res["threshold"], own["threshold"])
    m = measure_tracks_at(trials, thr, gallery_size=n, far_claim=res["per_comparison_far"])
    upper = m["far_interval"][1] if m["far_interval"] else None
    m.update(threshold=thr, own_threshold=own["threshold"], own_before_margin=own["threshold_before_margin"],
             margin=margin, set_by="the per-photo threshold" if thr == res["threshold"] else "its own passes",
             passes=pass_summary(trials), far_upper=upper,
             keeps=upper is not None and upper <= res["per_comparison_far"] and not own["weak"], own_weak=own["weak"])
    return m


def votes_promise(res: dict) -> str:
    """The votes rule's promise in words: per photo at the per-photo threshold, per track at the votes threshold."""
    v = res["votes"]
    f = v["fpir"]
    n = f["gallery_size"]
    backed = (f"measured at N={f['measured_at']}: {f['fpir']:.3%} of {f['nonmated_probes']} non-mated passes, 95% upper "
              f"{f['interval'][1]:.3%}" if f.get("fpir") is not None else f"FPIR not measurable here ({f['note']})")
    return (f"a photo of a person not enrolled matches one given enrolled person with probability <= "
            f"{res['per_comparison_far']:.3%} at {res['threshold']:.4f}; a track (votes: {v['passes']['min_chips']} looks at "
            f"{v['threshold']:.4f} "
            f"of one person) of a person not enrolled is named as someone on a watchlist of {n} with probability <= "
            f"{fpir_for_far(res['per_comparison_far'], n):.3%} ({backed}); per track against one person: pass FAR 95% "
            f"upper {v['far_upper']:.4%} over {v['impostor_passes']} impostor passes" + ("; WEAK" if res["weak"] else ""))


def calibrate(ls: LabelledPhotos, target: float, *, trials: PassTrials | None, track_margin: float = MARGINS["fast"].track,
              cohort_norm: bool = False, allow_weak: bool = False, votes_trials: PassTrials | None = None,
              votes_margin: float = MARGINS["fast"].votes, **kw) -> dict:
    """Both thresholds on the same people: :func:`calibrate_threshold` (per photo pair), and with ``trials``
    :func:`calibrate_track` under ``res["track"]`` (None when ``trials`` is None). ``cohort_norm`` adds the
    cohort-normalised track rule as a measurement (``res["track_cohort_norm"]``; never written). With
    ``votes_trials``, the votes rule's threshold and per-track promise (:func:`measure_votes`, ``res["votes"]``);
    a votes threshold whose passes break the claim is reported WEAK."""
    identities = kw.get("identities")
    res = calibrate_threshold(ls, target, allow_weak=allow_weak, **kw)
    res["track"] = None
    res["votes"] = None
    if votes_trials is not None:
        v = res["votes"] = measure_votes(votes_trials.subset(identities), res, votes_margin)
        if not v["keeps"]:
            res["warnings"].append(f"the votes rule's pass FAR 95% upper bound {'n/a' if v['far_upper'] is None else format(v['far_upper'], '.4%')} at "
                                   f"{v['threshold']:.4f} is above the claim {res['per_comparison_far']:.4%}, or "
                                   f"its impostor passes cannot back the claim")
            res["weak"] = True
    if trials is not None:
        tk = dict(gallery_size=kw.get("gallery_size"), check_gallery_size=kw.get("check_gallery_size", 10),
                  allow_weak=allow_weak)
        sub = trials.subset(identities)
        res["track"] = calibrate_track(sub, target, margin=track_margin, **tk)
        if cohort_norm:
            cohort = np.arange(len(ls.identities)) if identities is None else np.asarray(identities)
            res["track_cohort_norm"] = calibrate_track(cohort_normalised(sub, ls, cohort), target,
                                                       margin=COHORT_NORM_MARGIN, **tk)
    return res


def holdout_check(ls: LabelledPhotos, fraction: float, target: float, *, seed: int = 0,
                  within_families: bool = False, identities: np.ndarray | None = None,
                  trials: PassTrials | None = None, track_margin: float = MARGINS["fast"].track, cohort_norm: bool = False,
                  **kw) -> dict:
    """Calibrate on a seeded random part of the identities and measure FAR, FPIR and TAR on the other part, for
    the per-photo rule (``res["holdout"]``) and, with ``trials``, the track rule (``res["track"]["holdout"]``).

    Why: a threshold is calibrated on some people and used on others; how far its claim moves between two
    groups of people of the same data is the least a user should know before trusting it on a third. The TAR
    the unseen half keeps at the threshold the other half chose is what the claim costs in recall.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"--holdout-identities {fraction:g}: a fraction between 0 and 1")
    keep, held = split_identities(ls, fraction, seed, within_families, identities)
    if len(keep) < 2 or len(held) < 2:
        raise TooFewTrials(f"--holdout-identities {fraction:g} leaves {len(keep)} identities to calibrate on and "
                           f"{len(held)} to check on; each part needs at least 2", 0, 1.0, 0)
    res = calibrate(ls, target, trials=trials, track_margin=track_margin, cohort_norm=cohort_norm, identities=keep,
                    within_families=within_families, seed=seed, **kw)
    n = res["gallery_size"] or kw.get("check_gallery_size", 10)
    res["holdout"] = {
        "fraction": fraction, "seed": seed, "calibrated_on": [ls.identities[i] for i in keep],
        "held_out": [ls.identities[i] for i in held],
        **measure_at(ls, res["threshold"], identities=held, within_families=within_families, seed=seed,
                     gallery_size=n, enroll=kw.get("enroll", 3), max_pairs=kw.get("max_pairs", 5_000_000),
                     far_claim=res["per_comparison_far"]),
    }
    if res.get("votes") is not None and kw.get("votes_trials") is not None:
        res["votes"]["holdout"] = measure_tracks_at(kw["votes_trials"].subset(held), res["votes"]["threshold"], gallery_size=n,
                                                    far_claim=res["per_comparison_far"])
    if res["track"] is not None:
        unseen = trials.subset(held)
        res["track"]["holdout"] = measure_tracks_at(unseen, res["track"]["threshold"], gallery_size=n,
                                                    far_claim=res["track"]["per_comparison_far"])
        if cohort_norm:  # the unseen half is normalised against the calibration half: a cohort it is not in
            c = res["track_cohort_norm"]
            c["holdout"] = measure_tracks_at(cohort_normalised(unseen, ls, keep), c["threshold"], gallery_size=n,
                                             far_claim=c["per_comparison_far"])
    return res


# ------------------------------------------------------------------ the record and the config file
def describe(res: dict, command: str) -> str:
    """The record's ``data`` line: the command, the data, how each threshold was reached, what was measured."""
    what = (f"FPIR {res['target']:g} at gallery size {res['gallery_size']} (per-comparison FAR {res['per_comparison_far']:.3g})"
            if res["gallery_size"] else f"FAR {res['target']:g}")

    def how(r: dict) -> str:
        check = r["fpir_check"] or {}
        raised = "overrules" in check.get("verdict", "")
        return (f"{r['threshold_before_margin']:.4f} (FAR bound {r['far_threshold']:.4f}, raised for FPIR at "
                f"N={check['gallery_size']})" if raised else f"{r['threshold_before_margin']:.4f} (FAR bound)")

    def fpir(r: dict) -> str:
        f = r["fpir"]
        return (f", FPIR at N={f['measured_at']} {f['fpir']:.2%} (95% upper {f['interval'][1]:.2%})"
                if f.get("fpir") is not None else "")

    tar = f", TAR {res['tar']:.1%}" if res["tar"] is not None else ""
    out = (f"{command} ({res['identities']} identities, {res['photos']} photos, {res['impostors']} impostor pairs"
           f"{' sampled' if res['sampled'] else ''}): {what} at 95% confidence; {res['threshold']:.4f} = {how(res)} + margin "
           f"{res['margin']:g}; measured FAR {res['far']:.4%} (95% upper {res['far_upper']:.4%}){fpir(res)}{tar}"
           + (" [WEAK]" if res["weak"] else ""))
    v = res.get("votes")
    if v and v["far"] is not None:
        out += (f"; votes ({v['passes']['how']}, {v['impostor_passes']} impostor passes): {v['threshold']:.4f} = the "
                f"higher of the per-photo threshold and {v['own_before_margin']:.4f} + margin {v['margin']:g}: "
                f"measured pass FAR {v['far']:.4%} (95% upper {v['far_upper']:.4%}){fpir(v)}, TAR {v['tar']:.1%} of "
                f"{v['genuine_passes']} passes")
    t = res.get("track")
    if t:
        p = t["passes"]
        ttar = f", TAR {t['tar']:.1%} of {t['genuine_passes']} passes" if t["tar"] is not None else ""
        out += (f"; track ({RULE}, {p['how']}, {t['impostors']} impostor passes): {t['threshold']:.4f} = {how(t)} + "
                f"margin {t['margin']:g}; measured pass FAR {t['far']:.4%} (95% upper {t['far_upper']:.4%}){fpir(t)}{ttar}"
                + (" [WEAK]" if t["weak"] else ""))
    return out


def calibration_record(res: dict, profile_name: str, embedder: str) -> dict:
    """The ``matching.calibration`` record of a result: exactly the fields of :class:`stream.config.Calibration`,
    validated by it. ``far`` is the claim both thresholds keep (the weaker one when the data could not back the
    target for one of them); ``gallery_size`` the N FPIR was checked for."""
    t = res.get("track")
    far = max(res["per_comparison_far"], t["per_comparison_far"]) if t else res["per_comparison_far"]
    rec = {"profile": profile_name, "embedder": embedder, "threshold": float(res["threshold"]),
           "track_threshold": float(t["threshold"]) if t else None, "far": float(f"{far:.6g}"),
           "far_upper": float(f"{res['far_upper']:.6g}"), "impostors": int(res["impostors"]),
           "track_far_upper": float(f"{t['far_upper']:.6g}") if t else None,
           "track_impostors": int(t["impostors"]) if t else None,
           "votes_threshold": float(res["votes"]["threshold"]) if res.get("votes") else None,
           "votes_far_upper": float(f"{res['votes']['far_upper']:.6g}") if res.get("votes") and res["votes"]["far_upper"] is not None else None,
           "votes_impostors": int(res["votes"]["impostor_passes"]) if res.get("votes") else None,
           "gallery_size": int(res["gallery_size"] or res["fpir_check"]["gallery_size"]), "data": res["source"]}
    Calibration(**rec)  # the record must be one the config accepts
    return rec


def _load_for_edit(config_path: Path) -> tuple[YAML, CommentedMap]:
    """The config as a round-trip YAML document (keeps comments, key order and quoting), or ``ConfigError``."""
    yaml_rt = YAML()
    yaml_rt.preserve_quotes = True
    data = CommentedMap()
    if config_path.exists():
        try:
            loaded = yaml_rt.load(config_path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"{config_path}: not a text file; not changed") from None
        except (YAMLError, ValueError) as exc:
            raise ConfigError(f"{config_path}: not valid YAML, so not changed ({str(exc).splitlines()[0]})") from None
        except OSError as exc:
            raise ConfigError(f"{config_path}: cannot read ({exc.strerror})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{config_path}: the top level is not a mapping of settings; not changed")
        data = loaded if loaded is not None else data
    matching = data.get("matching")
    if matching is not None and not isinstance(matching, dict):
        raise ConfigError(f"{config_path}: matching is not a mapping; not changed")
    return yaml_rt, data


def check_writable(config_path: Path) -> None:
    """Refuse a ``--write`` target that could not be edited before the (minutes-long) calibration, not after."""
    _load_for_edit(config_path)
    if not config_path.resolve().parent.is_dir():
        raise ConfigError(f"{config_path}: no such directory {config_path.parent}; not written")


def write_calibration(config_path: Path, record: dict) -> None:
    """Set ``matching.calibration`` to ``record`` (:func:`calibration_record`) in a YAML config, removing the flat
    keys of configs from before calibration records (``matching.threshold``, ``threshold_far``, ...,
    ``gallery_size``: the config refuses both at once).

    A round-trip YAML editor keeps the user's comments, key order and quoting. A file that cannot be parsed, or
    whose result would not load as a facewatch config, is refused and left untouched (``ConfigError``); the new
    text replaces the old atomically, so a crash never leaves half a config.
    """
    yaml_rt, data = _load_for_edit(config_path)
    matching = data.get("matching")
    if matching is None:
        matching = data["matching"] = CommentedMap()
    for k in LEGACY_KEYS:
        if k in matching:
            del matching[k]
    rec = CommentedMap()
    for k in Calibration.model_fields:  # the record's own order
        rec[k] = record[k]
    matching["calibration"] = rec
    out = io.StringIO()
    yaml_rt.dump(data, out)
    tmp = config_path.with_name(f".{config_path.name}.calibrate.tmp")
    try:
        tmp.write_text(out.getvalue(), encoding="utf-8")
        load_config(tmp)  # what we write must load; else ConfigError and the original stays
        os.replace(tmp, config_path)
    finally:
        tmp.unlink(missing_ok=True)
