#!/usr/bin/env python3
"""Does a calibrated threshold keep its promise on people it was not calibrated on? A benchmark, not a test.

For each labelled folder (``--root``, repeatable): the identities are split at random into two halves (seeded,
each data family split on its own); ``facewatch calibrate``'s rule (the lowest threshold whose FAR upper bound
on every cross-identity pair of the calibration half is <= the target, plus the score margin) runs on one half,
and the other half, never seen, measures FAR (with its exact 95 % interval) over every cross-identity pair, FPIR
over every gallery of N identities, and TAR. One row per split, then the spread (min / median / max) next to
the claim, and the same without the margin to show what the margin buys.

``--derive R`` runs R further splits (seeds 1000..) to derive the margin itself: the shift between the threshold a
half was calibrated to (before any margin) and the threshold the other half needed for the target FAR; the
margin is its 95th percentile. With two roots it also calibrates on all of one and measures on all of the other:
how a threshold from one population behaves on another.

``--rule track`` does all of this for the rule that decides a track live (``engines.aggregate``: a track's mean
embedding against a person's template), on the pass trials ``facewatch calibrate`` calibrates it on
(``stream.eval.passes``: templates of ``--enroll`` photos, passes of ``--pass-length`` photos scored from
``--min-chips`` on, the max over prefixes): FAR is over impostor passes, FPIR over every gallery of N templates,
TAR over genuine passes, and ``--derive`` derives the track margin of ``stream.eval.rates.MARGINS``. ``--cohort-norm`` (with ``--rule track``) runs
the cohort-normalised track score next to it (``stream.eval.passes.cohort_normalised``: the calibration half is
the cohort, each trial leaving out its two identities; the unseen half is normalised against the calibration
half) and ends with the comparison at the same promise: margin needed, what it costs, TAR on the unseen half.

Every photo is embedded once (an in-memory cache; ``--cache DIR`` keeps it between runs) and each split is
matrix algebra on the embeddings. Exit status 1 when the rule broke its claim on any unseen half, 2 on bad input::

    python tools/threshold_splits.py --root ../shared/data/faces/wild_dev/ids --root ../shared/data/faces/lab_dev/ids --derive 100
    python tools/threshold_splits.py --rule track --root ../shared/data/faces/wild_dev/ids --derive 100 --cohort-norm
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engines.files import ModelError  # noqa: E402
from engines.profiles import PROFILE_NAMES  # noqa: E402
from stream.config import SHIPPED_CALIBRATIONS, load_config  # noqa: E402
from stream.eval.calibrate import (calibrate_threshold, calibrate_track, measure_at,  # noqa: E402
                                   measure_tracks_at, split_identities)
from stream.eval.identify import OpenSet, largest_measurable_gallery, open_set  # noqa: E402
from stream.eval.passes import (COHORT_NORM_MARGIN, DEFAULT_DRAWS, PassTrials,  # noqa: E402
                                cohort_normalised, pass_trials)
from stream.eval.photos import (EmbeddingCache, EvalError, LabelledPhotos, embed_labelled,  # noqa: E402
                                impostor_scores, list_identities)
from stream.eval.rates import MARGINS, TooFewTrials, fpir_for_far, threshold_at_false_rate  # noqa: E402


def pct(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def cache_key(cfg) -> str:
    """What an embedding cache file is valid for: the profile's vectors under the config's exposure gate."""
    return f"{cfg.embedder_id.replace(':', '_')}_clip{cfg.quality.max_clipped:g}"


def embed(root: Path, analyzer, cache_file: Path | None, max_clipped: float | None = None) -> LabelledPhotos:
    """Every photo of ``root`` embedded once (``max_clipped``: the exposure gate, as calibration applies it); with
    ``cache_file``, reused from an earlier run of the same photos."""
    paths = [str(p) for ps in list_identities(root).values() for p in ps]
    cache = EmbeddingCache(analyzer, root, max_clipped)
    if cache_file and cache_file.is_file():
        z = np.load(cache_file, allow_pickle=False)
        if list(z["paths"]) == paths:
            for p, e, ok in zip(paths, z["emb"], z["ok"]):
                cache.cache[Path(p)] = e if ok else None
                if not ok:
                    cache.failures[p] = "no face detected or gated (cached)"
    t = time.perf_counter()
    ls = embed_labelled(cache, root, progress=sys.stderr.isatty())
    print(f"# {root}: {len(ls.identities)} identities, {len(ls.paths)} photos with a face, {len(ls.failed)} without; "
          f"embedded in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    if cache_file:
        emb = [cache.cache[Path(p)] for p in paths]
        np.savez(cache_file, paths=np.array(paths), ok=np.array([e is not None for e in emb]),
                 emb=np.stack([e if e is not None else np.zeros(ls.emb.shape[1], np.float32) for e in emb]))
    return ls


@dataclass
class Rule:
    """One decision rule as the benchmark sees it: calibrate on some identities, measure on others, and the
    threshold other identities would have needed (point estimates) for the margin derivation."""

    name: str
    calibrate: Callable[[np.ndarray | None, float, int], dict]  # (identities, margin, seed) -> calibrate's result
    measure: Callable[[np.ndarray | None, float, np.ndarray | None], dict]  # (unseen, threshold, calibration ids)
    needed: Callable[[np.ndarray, np.ndarray], float | None]  # (unseen, calibration ids) -> threshold needed
    margin: float
    unit: str = "cosine"
    trials: str = "pairs"  # what a trial is, for the tables


def photo_rule(ls: LabelledPhotos, a: argparse.Namespace) -> Rule:
    """``facewatch calibrate --target-far FAR`` with ``matching.gallery_size`` N, per photo pair: the FAR bound, and
    the measured FPIR at N against 1 - (1 - FAR)^N where the calibration identities can show it, then the margin."""
    def cal(ids: np.ndarray | None, margin: float, seed: int) -> dict:
        return calibrate_threshold(ls, a.target_far, check_gallery_size=a.gallery_size, identities=ids,
                                   margin=margin, within_families=a.within_families, enroll=a.enroll, seed=seed)

    def meas(ids: np.ndarray | None, thr: float, _: np.ndarray | None) -> dict:
        return measure_at(ls, thr, identities=ids, gallery_size=a.gallery_size, enroll=a.enroll,
                          within_families=a.within_families, far_claim=a.target_far)

    def need(ids: np.ndarray, _: np.ndarray) -> float | None:
        imp, _n = impostor_scores(ls, ids, within_families=a.within_families)
        largest = largest_measurable_gallery(ls, ids, a.within_families)
        return needed(imp, lambda n: open_set(ls, n, a.enroll, ids, a.within_families), largest, a)

    return Rule("photo", cal, meas, need, a.margin if a.margin is not None else MARGINS[a.profile].photo)


def track_rule(ls: LabelledPhotos, a: argparse.Namespace, trials: PassTrials, cohort: bool = False) -> Rule:
    """``facewatch calibrate``'s track threshold on pass trials; with ``cohort``, of the cohort-normalised score
    (the calibration identities are the cohort: leave-two-out on them, and the unseen identities are scored
    against them, a cohort they are not in)."""
    def view(ids: np.ndarray | None, calib: np.ndarray | None) -> PassTrials:
        t = trials.subset(ids)
        if not cohort:
            return t
        return cohort_normalised(t, ls, np.arange(len(ls.identities)) if calib is None else calib)

    def cal(ids: np.ndarray | None, margin: float, seed: int) -> dict:
        return calibrate_track(view(ids, ids), a.target_far, check_gallery_size=a.gallery_size, margin=margin)

    def meas(ids: np.ndarray | None, thr: float, calib: np.ndarray | None) -> dict:
        m = measure_tracks_at(view(ids, calib), thr, gallery_size=a.gallery_size, far_claim=a.target_far)
        return {**m, "impostor_pairs": m["impostor_passes"], "genuine_pairs": m["genuine_passes"]}

    def need(ids: np.ndarray, calib: np.ndarray) -> float | None:
        t = view(ids, calib)
        return needed(t.impostors(), t.open_set, t.largest_gallery(), a)

    default = COHORT_NORM_MARGIN if cohort else MARGINS[a.profile].track
    margin = a.cohort_margin if cohort and a.cohort_margin is not None else (
        a.margin if not cohort and a.margin is not None else default)
    return Rule("track, cohort-normalised" if cohort else trials.rule, cal, meas, need, margin,
                "impostor sd (z)" if cohort else "cosine", "passes")


def votes_live_rule(ls: LabelledPhotos, a: argparse.Namespace, trials: PassTrials) -> Rule:
    """What ``recognition.rule: votes`` runs (``Config.votes_threshold``): the higher of the per-photo threshold
    (photo rule and margin) and the votes passes' own threshold (plus the votes margin), both calibrated on one
    half; the unseen half's votes passes measured at it. Does the per-track promise hold for people the
    calibration never saw?"""
    photo = photo_rule(ls, a)
    votes = track_rule(ls, a, trials)
    vm = a.margin if a.margin is not None else MARGINS[a.profile].votes

    def cal(ids: np.ndarray | None, margin: float, seed: int) -> dict:
        p, v = photo.calibrate(ids, photo.margin, seed), votes.calibrate(ids, margin, seed)
        out = dict(p if p["threshold"] >= v["threshold"] else v)
        out["shift_from"] = v["threshold_before_margin"]  # what the votes margin is added to (derive_shifts)
        return out

    return Rule("votes as run (the higher of the per-photo and the votes threshold)", cal, votes.measure,
                votes.needed, vm, "cosine", "passes")


def needed(imp: np.ndarray, make_open_set: Callable[[int], OpenSet], largest: int, a: argparse.Namespace) -> float | None:
    """The lowest threshold at which these impostors measure FAR <= the claim and FPIR at N <= its claim (point
    estimates: what the unseen people needed), or None when they cannot show it."""
    if len(imp) * a.target_far < 1:
        return None
    t_far, _ = threshold_at_false_rate(imp, a.target_far)
    if largest < a.gallery_size:
        return t_far
    os_ = make_open_set(a.gallery_size)
    claim = fpir_for_far(a.target_far, a.gallery_size)
    scores = np.concatenate([f.others.ravel() for f in os_.families])
    cands = np.unique(np.r_[t_far, np.nextafter(scores[scores >= t_far], np.inf)])  # just above each score
    lo, hi = 0, len(cands) - 1  # the last one is above every score: FPIR 0
    while lo < hi:  # FPIR only falls as the threshold rises
        mid = (lo + hi) // 2
        if os_.expected_false_positives(cands[mid]) / os_.probes <= claim:
            hi = mid
        else:
            lo = mid + 1
    return float(cands[lo])


def one_split(ls: LabelledPhotos, seed: int, a: argparse.Namespace, r: Rule) -> dict:
    """Calibrate on one half of the identities, measure on the other; ``refused`` when a half cannot support the
    target."""
    keep, held = split_identities(ls, 0.5, seed, a.within_families)
    row: dict = {"seed": seed, "calibrated_on": len(keep), "held_out": len(held)}
    try:
        res = r.calibrate(keep, r.margin, seed)
    except (TooFewTrials, ValueError) as exc:
        row["refused"] = str(exc)
        return row
    row.update(threshold=res["threshold"], before_margin=res["threshold_before_margin"], calib_impostors=res["impostors"],
               calib_far_upper=res["far_upper"], calib_tar=res["tar"])
    row["unseen"] = r.measure(held, res["threshold"], keep)
    row["unseen_no_margin"] = r.measure(held, res["threshold_before_margin"], keep)
    return row


def keeps(unseen: dict, a: argparse.Namespace) -> bool:
    """Whether an unseen half measured FAR and FPIR (where measurable) at or under their claims."""
    f = unseen["fpir"]
    far_ok = unseen["far"] is None or unseen["far"] <= a.target_far
    return far_ok and (f.get("fpir") is None or f["fpir"] <= fpir_for_far(a.target_far, f["measured_at"]))


def spread(xs: list[float]) -> str:
    xs = [x for x in xs if x is not None]
    return " / ".join(pct(v) for v in (min(xs), float(np.median(xs)), max(xs))) if xs else "n/a"


def table(name: str, rows: list[dict], a: argparse.Namespace, r: Rule) -> list[str]:
    fpir_claim = fpir_for_far(a.target_far, a.gallery_size)
    out = [f"\n## {name}, {r.name} rule: {len(rows)} random identity splits (half calibrates, half unseen); claim FAR "
           f"{pct(a.target_far)} per {r.trials[:-1] if r.trials == 'pairs' else 'pass'}, FPIR {pct(fpir_claim)} at "
           f"N={a.gallery_size} (1-(1-FAR)^N); margin {r.margin:g} ({r.unit})\n",
           f"| split | ids calib/unseen | calib impostor {r.trials} | threshold | unseen impostor {r.trials} | "
           f"unseen FAR [95% CI] | unseen FPIR@N [95% CI] | unseen TAR |",
           "|---|---|---|---|---|---|---|---|"]
    ok = [x for x in rows if "unseen" in x]
    for x in rows:
        if "unseen" not in x:
            out.append(f"| {x['seed']} | {x['calibrated_on']}/{x['held_out']} | refused: {x['refused'][:80]} | | | | | |")
            continue
        u, f = x["unseen"], x["unseen"]["fpir"]
        far = f"{pct(u['far'])} [{pct(u['far_interval'][0])}-{pct(u['far_interval'][1])}]" if u["far"] is not None else "n/a"
        fp = (f"{pct(f['fpir'], 2)} [{pct(f['interval'][0], 2)}-{pct(f['interval'][1], 2)}] N={f['measured_at']}"
              if f.get("fpir") is not None else "n/a")
        out.append(f"| {x['seed']} | {x['calibrated_on']}/{x['held_out']} | {x['calib_impostors']} | {x['threshold']:.4f} "
                   f"({x['before_margin']:.4f}+{r.margin:g}) | {u['impostor_pairs']} | {far} | {fp} | {pct(u['tar'], 1)} |")
    if not ok:
        return out
    far_ok = sum(1 for x in ok if x["unseen"]["far"] is not None and x["unseen"]["far"] <= a.target_far)
    far_lo = sum(1 for x in ok if x["unseen"]["far"] is not None and x["unseen"]["far_interval"][0] <= a.target_far)
    fp = [x["unseen"]["fpir"] for x in ok if x["unseen"]["fpir"].get("fpir") is not None]
    fp_ok = sum(1 for f in fp if f["fpir"] <= fpir_for_far(a.target_far, f["measured_at"]))
    nm = [x["unseen_no_margin"] for x in ok]
    out += ["",
            "| unseen half, min / median / max | with the margin | without it (CP bound only) | claim |",
            "|---|---|---|---|",
            f"| threshold | {' / '.join(f'{v:.4f}' for v in np.quantile([x['threshold'] for x in ok], [0, .5, 1]))} | "
            f"{' / '.join(f'{v:.4f}' for v in np.quantile([x['before_margin'] for x in ok], [0, .5, 1]))} | |",
            f"| FAR | {spread([x['unseen']['far'] for x in ok])} | {spread([u['far'] for u in nm])} | {pct(a.target_far)} |",
            f"| FPIR at N={a.gallery_size} | {spread([f['fpir'] for f in fp])} | "
            f"{spread([u['fpir'].get('fpir') for u in nm])} | {pct(fpir_claim)} |",
            f"| TAR (same-identity {r.trials}) | {spread([x['unseen']['tar'] for x in ok])} | {spread([u['tar'] for u in nm])} | |",
            f"| splits with unseen FAR <= claim | {far_ok}/{len(ok)} | "
            f"{sum(1 for u in nm if u['far'] is not None and u['far'] <= a.target_far)}/{len(ok)} | |",
            f"| splits with unseen FPIR <= claim | {fp_ok}/{len(fp)} | "
            f"{sum(1 for u in nm if u['fpir'].get('fpir') is not None and u['fpir']['fpir'] <= fpir_for_far(a.target_far, u['fpir']['measured_at']))}/{len(fp)} | |",
            f"| splits whose unseen FAR interval reaches the claim | {far_lo}/{len(ok)} | | |"]
    if len(fp) < len(ok):
        out.append(f"\n({len(ok) - len(fp)} splits: FPIR at N={a.gallery_size} not measurable on the unseen half)")
    return out


def derive_shifts(ls: LabelledPhotos, a: argparse.Namespace, r: Rule) -> list[float]:
    """Per split (seeds 1000..), how far above the threshold one half was calibrated to (no margin) the unseen
    half needed to be."""
    shifts = []
    for seed in range(1000, 1000 + a.derive):
        keep, held = split_identities(ls, 0.5, seed, a.within_families)
        try:
            res = r.calibrate(keep, 0.0, seed)
        except (TooFewTrials, ValueError):
            continue
        need = r.needed(held, keep)
        if need is not None:
            # votes as run: max(per-photo threshold, votes threshold + margin); a split the per-photo threshold
            # already covers needs no votes margin, one it does not needs need - the votes threshold
            base = res["threshold"] if need <= res["threshold"] else res.get("shift_from", res["threshold"])
            shifts.append(need - base)
    return shifts


def derive(ls: LabelledPhotos, a: argparse.Namespace, r: Rule) -> list[str]:
    """The margin from the data: how far above a half's calibrated threshold the other half needed to be."""
    shifts = derive_shifts(ls, a, r)
    if not shifts:
        return ["(no split could be calibrated)"]
    q = np.quantile(shifts, [0.5, 0.9, 0.95, 0.99, 1.0])
    cover = float(np.ceil(max(q[3], 0) * 1000 - 1e-9) / 1000)  # the 3-decimal value that covers 99 % of splits
    return [f"\nmargin derivation, {r.name} rule, over {len(shifts)} splits (seeds 1000..{999 + a.derive}): threshold the "
            f"unseen half needed for FAR {a.target_far:g} and FPIR {fpir_for_far(a.target_far, a.gallery_size):.4g} at "
            f"N={a.gallery_size} minus the calibrated half's (no margin, {r.unit}): median {q[0]:+.4f}, 90% {q[1]:+.4f}, "
            f"95% {q[2]:+.4f}, 99% {q[3]:+.4f}, max {q[4]:+.4f} -> a margin of {max(q[2], 0):.4f} keeps the claim in 95% "
            f"of splits, {cover:.3f} in 99% ({sum(s <= r.margin for s in shifts)}/{len(shifts)} with {r.margin:g})"]


def compare(name: str, plain: tuple[Rule, list[dict]], other: tuple[Rule, list[dict]], a: argparse.Namespace) -> list[str]:
    """Two rules at the same promise on the same unseen halves: the margin each needed, what it cost in TAR, and
    the TAR each kept; the product keeps the other rule only if it accepts more genuine passes here."""
    out = [f"\n## {name}: {plain[0].name} vs {other[0].name} at the same promise (same splits, same unseen halves)\n",
           "| | " + " | ".join(r.name for r, _ in (plain, other)) + " |", "|---|---|---|"]

    def col(rows: list[dict], f) -> list:
        return [f(x) for x in rows if "unseen" in x]

    def stat(rule_rows: tuple[Rule, list[dict]], f) -> str:
        return spread(col(rule_rows[1], f))

    out.append(f"| margin ({plain[0].unit} / {other[0].unit}) | {plain[0].margin:g} | {other[0].margin:g} |")
    out.append("| unseen TAR at the claim (min / median / max) | " + " | ".join(stat(rr, lambda x: x["unseen"]["tar"])
                                                                          for rr in (plain, other)) + " |")
    out.append("| unseen TAR without the margin | " + " | ".join(stat(rr, lambda x: x["unseen_no_margin"]["tar"])
                                                              for rr in (plain, other)) + " |")
    out.append("| TAR the margin costs on the unseen half | " + " | ".join(
        stat(rr, lambda x: x["unseen_no_margin"]["tar"] - x["unseen"]["tar"]) for rr in (plain, other)) + " |")
    out.append("| mean unseen TAR at the claim | " + " | ".join(
        pct(float(np.mean(col(rr[1], lambda x: x["unseen"]["tar"]))), 1) for rr in (plain, other)) + " |")
    out.append("| splits keeping FAR and FPIR on the unseen half | " + " | ".join(
        f"{sum(col(rr[1], lambda x: keeps(x['unseen'], a)))}/{len(col(rr[1], lambda x: 1))}" for rr in (plain, other)) + " |")
    both = [(p, o) for p, o in zip(plain[1], other[1]) if "unseen" in p and "unseen" in o]
    wins = sum(1 for p, o in both if o["unseen"]["tar"] > p["unseen"]["tar"])
    out.append(f"| splits where {other[0].name} keeps more unseen TAR | | {wins}/{len(both)} |")
    return out


def across(sets: dict[str, LabelledPhotos], a: argparse.Namespace, rules: dict[str, Rule]) -> list[str]:
    """Calibrated on all of one population, measured on all of another (and the shipped default on each)."""
    shipped = SHIPPED_CALIBRATIONS.get(a.profile)
    kind = next(iter(rules.values())).name
    out = [f"\n## one population's threshold ({kind}) on another (claim FAR {pct(a.target_far)}, FPIR at N={a.gallery_size})\n",
           "| calibrated on | threshold | measured on | FAR [95% CI] | FPIR@N [95% CI] | TAR |", "|---|---|---|---|---|---|"]
    per_photo = kind == "photo"
    default = (None if shipped is None else shipped.threshold if per_photo else
               max(shipped.threshold, shipped.votes_threshold or -1.0) if kind.startswith("votes") else shipped.track_threshold)
    thresholds = {"shipped default": default} if default is not None else {}
    for name, r in rules.items():
        try:
            thresholds[name] = r.calibrate(None, r.margin, 0)["threshold"]
        except (TooFewTrials, ValueError) as exc:
            out.append(f"| {name} | refused: {exc} | | | | |")
    for src, thr in thresholds.items():
        for name, r in rules.items():
            m = r.measure(None, thr, None)
            f = m["fpir"]
            fp = (f"{pct(f['fpir'], 2)} [{pct(f['interval'][0], 2)}-{pct(f['interval'][1], 2)}] N={f['measured_at']}"
                  if f.get("fpir") is not None else "n/a")
            far = (f"{pct(m['far'])} [{pct(m['far_interval'][0])}-{pct(m['far_interval'][1])}]" if m["far"] is not None
                   else "n/a")
            out.append(f"| {src} | {thr:.4f} | {name} (all) | {far} | {fp} | {pct(m['tar'], 1)} |")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", action="append", required=True, type=Path, help="labelled folder ROOT/<name>/<i>.jpg")
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="first split's seed")
    ap.add_argument("--target-far", type=float, default=0.001)
    ap.add_argument("--margin", type=float, default=None,
                    help="score margin [default: the profile's, stream.eval.rates.MARGINS]")
    ap.add_argument("--rule", choices=("photo", "track", "votes", "votes-live"), default="photo",
                    help="photo = one photo pair (the per-photo threshold); track = the track rule on pass trials; "
                         "votes = the votes passes' own threshold; votes-live = the higher of that and the per-photo "
                         "threshold (what recognition.rule: votes runs)")
    ap.add_argument("--pass-length", type=int, default=10, help="track: photos per pass (matching.max_embeddings_per_track)")
    ap.add_argument("--min-chips", type=int, default=2, help="track: first prefix that decides (matching.votes)")
    ap.add_argument("--draws", type=int, default=DEFAULT_DRAWS, help="track: seeded draws per identity")
    ap.add_argument("--cohort-norm", action="store_true",
                    help="track: also the cohort-normalised track score, and the comparison with the plain one")
    ap.add_argument("--cohort-margin", type=float, default=None, help=f"margin of the cohort-normalised score "
                    f"[default: {COHORT_NORM_MARGIN}]")
    ap.add_argument("--gallery-size", type=int, default=5, help="N for FPIR (a half must hold a family of N+1)")
    ap.add_argument("--enroll", type=int, default=3)
    ap.add_argument("--across-families", dest="within_families", action="store_false",
                    help="impostors across families too (default: within one family, as MANIFEST asks)")
    ap.add_argument("--derive", type=int, default=0, help="also derive the margin from this many further splits")
    ap.add_argument("--cache", type=Path, default=None, help="directory for embedding caches (one .npz per root)")
    ap.add_argument("--json", type=Path, default=None, help="write every row here too")
    ap.add_argument("--profile", choices=PROFILE_NAMES, default="fast", help="recognition profile whose scores are split")
    a = ap.parse_args()
    try:
        from stream.loaders import photo_analyzer

        cfg = load_config(overrides={"engines": {"engine": "onnxruntime"}, "recognition": {"profile": a.profile}})
        analyzer = photo_analyzer(cfg)
        sets = {}
        for root in a.root:
            name = root.parent.name if root.name == "ids" else root.name
            key = cache_key(cfg)  # a cache of one profile's vectors is never read for another's
            sets[name] = embed(root, analyzer, a.cache / f"{name}_ids_{key}.npz" if a.cache else None,
                               cfg.quality.max_clipped)
    except (EvalError, ModelError, OSError) as exc:
        print(f"threshold_splits: error: {exc}", file=sys.stderr)
        return 2
    if a.cohort_norm and a.rule != "track":
        print("threshold_splits: error: --cohort-norm needs --rule track", file=sys.stderr)
        return 2
    rules: dict[str, list[Rule]] = {}
    for name, ls in sets.items():
        if a.rule == "photo":
            rules[name] = [photo_rule(ls, a)]
            continue
        t = time.perf_counter()
        trials = pass_trials(ls, enroll=a.enroll, length=a.pass_length, min_chips=a.min_chips, draws=a.draws,
                             within_families=a.within_families, rule="votes" if a.rule == "votes-live" else a.rule)
        if a.rule == "votes-live":
            rules[name] = [votes_live_rule(ls, a, trials)]
            continue
        print(f"# {name}: {trials.describe()} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        rules[name] = [track_rule(ls, a, trials)] + ([track_rule(ls, a, trials, cohort=True)] if a.cohort_norm else [])
    lines, dump, broken = [], {}, 0
    for name, ls in sets.items():
        per_rule = []
        for r in rules[name]:
            t = time.perf_counter()
            rows = [one_split(ls, s, a, r) for s in range(a.seed, a.seed + a.splits)]
            dump[f"{name}:{r.name}"] = rows
            lines += table(name, rows, a, r)
            per_rule.append((r, rows))
            if r.name in ("photo", "track", "votes") or r.name.startswith("votes as run"):  # the product's rules; a measured option does not fail the run
                broken += sum(1 for x in rows if "unseen" in x and not keeps(x["unseen"], a))
            if a.derive:
                lines += derive(ls, a, r)
            print(f"# {name}, {r.name}: {time.perf_counter() - t:.1f} s", file=sys.stderr)
        if len(per_rule) == 2:
            lines += compare(name, per_rule[0], per_rule[1], a)
    if len(sets) > 1:
        lines += across(sets, a, {name: rs[0] for name, rs in rules.items()})
    print("\n".join(lines))
    if a.json:
        a.json.write_text(json.dumps(dump, indent=1, default=float))
    if broken:
        print(f"threshold_splits: the rule broke its claim on the unseen half of {broken} split(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
