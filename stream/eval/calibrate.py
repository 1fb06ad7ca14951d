"""Thresholds from data that keep their promise, and writing them into a config file.

The rule (README "Accuracy"): impostors are every cross-identity photo pair of the labelled folder (a seeded
sample when there are millions); the threshold is the lowest 4-digit one at which the UPPER end of the exact
95 % interval of the measured FAR is <= the target, plus a score margin (``DEFAULT_MARGIN``) for the people the
data does not hold. For 1:N the per-comparison FAR comes from 1 - (1 - FPIR)^(1/N); either way FPIR is then
measured on open-set galleries of N identities (the configured watchlist size for 1:1) and the measurement wins
over the formula; the margin goes on last. Too few impostors for the target is a refusal naming
the FAR the data can support, never a threshold that only describes the pairs it was fitted on.
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
from ruamel.yaml import YAML, YAMLError
from ruamel.yaml.comments import CommentedMap

from stream.config import ConfigError, load_config

from stream.eval.identify import OpenSet, largest_measurable_gallery, open_set
from stream.eval.photos import LabelledPhotos, genuine_scores, impostor_scores
from stream.eval.rates import (DEFAULT_MARGIN, CONFIDENCE, Bounded, TooFewTrials, bounded_threshold, fpir_for_far,
                               per_comparison_far_for_gallery, rate_at)



def _bounded(b: Bounded) -> dict:
    return {"threshold": b.threshold, "false": b.false_accepts, "trials": b.trials, "rate": b.rate,
            "interval": [b.lower, b.upper], "target": b.target, "meets_target": b.meets_target}


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
    if n < 1:
        return {"gallery_size": gallery_size, "measured_at": None, "fpir": None, "interval": None,
                "note": "no family has 2 identities: FPIR cannot be measured"}
    os_ = open_set(ls, n, enroll, identities, within_families)
    b = os_.fpir_at(threshold)
    out = {"gallery_size": gallery_size, "measured_at": n, "fpir": b.rate, "interval": [b.lower, b.upper],
           "false_positives": b.false_accepts, "nonmated_probes": b.trials, "tpir": os_.tpir_at(threshold),
           "claimed": fpir_for_far(far_claim, n) if far_claim else None, "note": ""}
    if n < gallery_size:
        out["note"] = (f"measured at N={n}: the largest family has {largest + 1} identities, and a gallery of "
                       f"{gallery_size} needs {gallery_size + 1}")
    return out


def calibrate_threshold(ls: LabelledPhotos, target: float, *, gallery_size: int | None = None,
                        check_gallery_size: int = 10, margin: float = DEFAULT_MARGIN, enroll: int = 3,
                        within_families: bool = False, identities: np.ndarray | None = None,
                        max_pairs: int = 5_000_000, seed: int = 0, allow_weak: bool = False,
                        genuine: np.ndarray | None = None, confidence: float = CONFIDENCE) -> dict:
    """The threshold for a target FAR (1:1) or, with ``gallery_size``, a target FPIR at that N.

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
    far_target = per_comparison_far_for_gallery(target, gallery_size) if gallery_size else target
    warnings: list[str] = []
    what = "impostor pairs" + (" (within families)" if within_families else "")
    base = bounded_threshold(imp, far_target, confidence=confidence, allow_weak=allow_weak, what=what)
    if not base.meets_target:
        warnings.append(f"WEAK: {base.trials} impostor pairs cannot support FAR {far_target:.3g}; the lowest FAR they "
                        f"support is {base.supportable:.3g}, so that is all this threshold claims")
    supported = base.threshold  # what the calibration data supports, before the margin
    formula = {"per_comparison_far": far_target, "threshold": min(round(supported + margin, 4), 1.0)}
    # FPIR is checked at the watchlist size: the target itself with --gallery-size (a refusal when it cannot be
    # checked), else the FPIR the FAR target predicts at the configured size (skipped, said so, when it cannot be).
    n_check = gallery_size or check_gallery_size
    fpir_target = target if gallery_size else fpir_for_far(target, n_check)
    fpir: dict = {"gallery_size": n_check, "target": fpir_target}
    os_: OpenSet | None = None
    largest = largest_measurable_gallery(ls, identities, within_families)
    if largest < n_check:
        msg = (f"FPIR at gallery size {n_check} cannot be checked on this data: the largest "
               f"{'family' if within_families else 'folder'} has {largest + 1} identities with a face, and a "
               f"gallery of {n_check} plus a stranger needs {n_check + 1}")
        if gallery_size and not allow_weak:
            raise TooFewTrials(msg + " (--allow-weak uses the formula's threshold unchecked)", 0, 1.0, n_check + 1)
        if gallery_size:
            warnings.append("WEAK: " + msg + "; the formula's threshold is used unchecked")
        fpir["verdict"] = "not checked: " + msg
    else:
        os_ = open_set(ls, n_check, enroll, identities, within_families)
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
    thr = min(round(supported + margin, 4), 1.0)
    if os_ is not None:
        fpir["final"] = _bounded(os_.fpir_at(thr, fpir_target, confidence))
    at = rate_at(imp, thr, far_target, confidence)
    gen = genuine if genuine is not None else genuine_scores(ls, identities, max_pairs=max_pairs, seed=seed)
    claim = max(far_target, base.supportable) if not base.meets_target else far_target
    ids_used = len(ls.identities) if identities is None else len(identities)
    res = {
        "threshold": thr, "target": target, "gallery_size": gallery_size, "per_comparison_far": claim,
        "margin": margin, "threshold_before_margin": supported, "far_threshold": base.threshold, "confidence": confidence,
        "identities": ids_used, "photos": int(len(ls.paths) if identities is None else np.isin(ls.ident, identities).sum()),
        "photos_without_face": len(ls.failed), "within_families": within_families,
        "impostors": at.trials, "impostor_pairs_available": available, "sampled": available > at.trials,
        "false_accepts": at.false_accepts, "far": at.rate, "far_interval": [at.lower, at.upper], "far_upper": at.upper,
        "supportable_far": base.supportable, "tar": float(np.mean(gen >= thr)) if len(gen) else None,
        "genuine_pairs": int(len(gen)), "formula": formula, "fpir_check": fpir,
        "fpir": fpir_report(ls, thr, gallery_size=n_check, enroll=enroll,
                            identities=identities, within_families=within_families, far_claim=claim),
        "weak": bool(warnings), "warnings": warnings,
    }
    return res


def holdout_check(ls: LabelledPhotos, fraction: float, target: float, *, seed: int = 0,
                  within_families: bool = False, identities: np.ndarray | None = None, **kw) -> dict:
    """Calibrate on a seeded random part of the identities and measure FAR and FPIR on the other part.

    Why: a threshold is calibrated on some people and used on others; how far its claim moves between two
    groups of people of the same data is the least a user should know before trusting it on a third.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"--holdout-identities {fraction:g}: a fraction between 0 and 1")
    keep, held = split_identities(ls, fraction, seed, within_families, identities)
    if len(keep) < 2 or len(held) < 2:
        raise TooFewTrials(f"--holdout-identities {fraction:g} leaves {len(keep)} identities to calibrate on and "
                           f"{len(held)} to check on; each part needs at least 2", 0, 1.0, 0)
    res = calibrate_threshold(ls, target, identities=keep, within_families=within_families, seed=seed, **kw)
    res["holdout"] = {
        "fraction": fraction, "seed": seed, "calibrated_on": [ls.identities[i] for i in keep],
        "held_out": [ls.identities[i] for i in held],
        **measure_at(ls, res["threshold"], identities=held, within_families=within_families, seed=seed,
                     gallery_size=res["gallery_size"] or kw.get("check_gallery_size", 10),
                     enroll=kw.get("enroll", 3), max_pairs=kw.get("max_pairs", 5_000_000),
                     far_claim=res["per_comparison_far"]),
    }
    return res


def describe(res: dict, command: str) -> str:
    """The ``threshold_source`` line: the command, the data, how the threshold was reached, what was measured."""
    what = (f"FPIR {res['target']:g} at gallery size {res['gallery_size']} (per-comparison FAR {res['per_comparison_far']:.3g})"
            if res["gallery_size"] else f"FAR {res['target']:g}")
    check = res["fpir_check"] or {}
    raised = "overrules" in check.get("verdict", "")
    how = (f"{res['threshold_before_margin']:.4f} (FAR bound {res['far_threshold']:.4f}, raised for FPIR at "
           f"N={check['gallery_size']})" if raised else f"{res['threshold_before_margin']:.4f} (FAR bound)")
    f = res["fpir"]
    fpir = (f", FPIR at N={f['measured_at']} {f['fpir']:.2%} (95% upper {f['interval'][1]:.2%})"
            if f.get("fpir") is not None else "")
    tar = f", TAR {res['tar']:.1%}" if res["tar"] is not None else ""
    return (f"{command} ({res['identities']} identities, {res['photos']} photos, {res['impostors']} impostor pairs"
            f"{' sampled' if res['sampled'] else ''}): {what} at 95% confidence; {res['threshold']:.4f} = {how} + margin "
            f"{res['margin']:g}; measured FAR {res['far']:.4%} (95% upper {res['far_upper']:.4%}){fpir}{tar}"
            + (" [WEAK]" if res["weak"] else ""))


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


def write_threshold(config_path: Path, result: dict) -> None:
    """Set ``matching.threshold`` and its record (``threshold_far`` claim, ``threshold_far_upper``,
    ``threshold_impostors``, ``threshold_source``; ``gallery_size`` for 1:N) in a YAML config.

    A round-trip YAML editor keeps the user's comments, key order and quoting. A file that cannot be parsed, or
    whose result would not load as a facewatch config, is refused and left untouched (``ConfigError``); the new
    text replaces the old atomically, so a crash never leaves half a config.
    """
    yaml_rt, data = _load_for_edit(config_path)
    matching = data.get("matching")
    if matching is None:
        matching = data["matching"] = CommentedMap()
    matching["threshold"] = float(result["threshold"])
    matching["threshold_far"] = float(f"{result['per_comparison_far']:.6g}")
    matching["threshold_far_upper"] = float(f"{result['far_upper']:.6g}")
    matching["threshold_impostors"] = int(result["impostors"])
    matching["threshold_source"] = result["source"]
    if result.get("gallery_size"):
        matching["gallery_size"] = int(result["gallery_size"])
    out = io.StringIO()
    yaml_rt.dump(data, out)
    tmp = config_path.with_name(f".{config_path.name}.calibrate.tmp")
    try:
        tmp.write_text(out.getvalue(), encoding="utf-8")
        load_config(tmp)  # what we write must load; else ConfigError and the original stays
        os.replace(tmp, config_path)
    finally:
        tmp.unlink(missing_ok=True)
