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

Every photo is embedded once (an in-memory cache; ``--cache DIR`` keeps it between runs) and each split is
matrix algebra on the embeddings. Exit status 1 when the rule broke its claim on any unseen half, 2 on bad input::

    python tools/threshold_splits.py --root ../shared/data/faces/wild_dev/ids --root ../shared/data/faces/lab_dev/ids --derive 100
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stream.config import load_config  # noqa: E402
from stream.eval.calibrate import DEFAULT_MARGIN, calibrate_threshold, measure_at, split_identities  # noqa: E402
from stream.eval.identify import largest_measurable_gallery, open_set  # noqa: E402
from stream.eval.photos import (EmbeddingCache, EvalError, LabelledPhotos, embed_labelled,  # noqa: E402
                                impostor_scores, list_identities)
from stream.eval.rates import TooFewTrials, fpir_for_far, threshold_at_false_rate  # noqa: E402


def pct(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def embed(root: Path, analyzer, cache_file: Path | None) -> LabelledPhotos:
    """Every photo of ``root`` embedded once; with ``cache_file``, reused from an earlier run of the same photos."""
    paths = [str(p) for ps in list_identities(root).values() for p in ps]
    cache = EmbeddingCache(analyzer, root)
    if cache_file and cache_file.is_file():
        z = np.load(cache_file, allow_pickle=False)
        if list(z["paths"]) == paths:
            for p, e, ok in zip(paths, z["emb"], z["ok"]):
                cache.cache[Path(p)] = e if ok else None
                if not ok:
                    cache.failures[p] = "no face detected (cached)"
    t = time.perf_counter()
    ls = embed_labelled(cache, root, progress=sys.stderr.isatty())
    print(f"# {root}: {len(ls.identities)} identities, {len(ls.paths)} photos with a face, {len(ls.failed)} without; "
          f"embedded in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    if cache_file:
        emb = [cache.cache[Path(p)] for p in paths]
        np.savez(cache_file, paths=np.array(paths), ok=np.array([e is not None for e in emb]),
                 emb=np.stack([e if e is not None else np.zeros(ls.emb.shape[1], np.float32) for e in emb]))
    return ls


def rule(ls: LabelledPhotos, a: argparse.Namespace, identities: np.ndarray | None, margin: float, seed: int = 0) -> dict:
    """``facewatch calibrate --target-far FAR`` with ``matching.gallery_size`` N: the FAR bound, and the measured
    FPIR at N against 1 - (1 - FAR)^N where the calibration identities can show it, then the margin."""
    return calibrate_threshold(ls, a.target_far, check_gallery_size=a.gallery_size, identities=identities,
                               margin=margin, within_families=a.within_families, enroll=a.enroll, seed=seed)


def needed(ls: LabelledPhotos, a: argparse.Namespace, identities: np.ndarray) -> float | None:
    """The lowest threshold at which ``identities`` measure FAR <= the claim and FPIR at N <= its claim (point
    estimates: what the unseen people needed), or None when they cannot show it."""
    imp, _ = impostor_scores(ls, identities, within_families=a.within_families)
    if len(imp) * a.target_far < 1:
        return None
    t_far, _ = threshold_at_false_rate(imp, a.target_far)
    if largest_measurable_gallery(ls, identities, a.within_families) < a.gallery_size:
        return t_far
    os_ = open_set(ls, a.gallery_size, a.enroll, identities, a.within_families)
    claim = fpir_for_far(a.target_far, a.gallery_size)
    scores = np.concatenate([f.others.ravel() for f in os_.families])
    cands = np.unique(np.r_[t_far, np.nextafter(scores[scores >= t_far], 2.0)])  # just above each score
    lo, hi = 0, len(cands) - 1  # the last one is above every score: FPIR 0
    while lo < hi:  # FPIR only falls as the threshold rises
        mid = (lo + hi) // 2
        if os_.expected_false_positives(cands[mid]) / os_.probes <= claim:
            hi = mid
        else:
            lo = mid + 1
    return float(cands[lo])


def one_split(ls: LabelledPhotos, seed: int, a: argparse.Namespace) -> dict | None:
    """Calibrate on one half of the identities, measure on the other; None when a half cannot support the target."""
    keep, held = split_identities(ls, 0.5, seed, a.within_families)
    row: dict = {"seed": seed, "calibrated_on": len(keep), "held_out": len(held)}
    try:
        res = rule(ls, a, keep, a.margin, seed)
    except TooFewTrials as exc:
        row["refused"] = str(exc)
        return row
    row.update(threshold=res["threshold"], before_margin=res["threshold_before_margin"], calib_impostors=res["impostors"],
               calib_far_upper=res["far_upper"])
    row["unseen"] = measure_at(ls, res["threshold"], identities=held, gallery_size=a.gallery_size, enroll=a.enroll,
                               within_families=a.within_families, far_claim=a.target_far)
    row["unseen_no_margin"] = measure_at(ls, res["threshold_before_margin"], identities=held, gallery_size=a.gallery_size,
                                         enroll=a.enroll, within_families=a.within_families, far_claim=a.target_far)
    return row


def keeps(unseen: dict, a: argparse.Namespace) -> bool:
    """Whether an unseen half measured FAR and FPIR (where measurable) at or under their claims."""
    f = unseen["fpir"]
    far_ok = unseen["far"] is None or unseen["far"] <= a.target_far
    return far_ok and (f.get("fpir") is None or f["fpir"] <= fpir_for_far(a.target_far, f["measured_at"]))


def spread(xs: list[float]) -> str:
    xs = [x for x in xs if x is not None]
    return " / ".join(pct(v) for v in (min(xs), float(np.median(xs)), max(xs))) if xs else "n/a"


def table(name: str, rows: list[dict], a: argparse.Namespace) -> list[str]:
    fpir_claim = fpir_for_far(a.target_far, a.gallery_size)
    out = [f"\n## {name}: {len(rows)} random identity splits (half calibrates, half unseen); claim FAR {pct(a.target_far)}, "
           f"FPIR {pct(fpir_claim)} at N={a.gallery_size} (1-(1-FAR)^N); margin {a.margin:g}\n",
           "| split | ids calib/unseen | calib impostors | threshold | unseen impostors | unseen FAR [95% CI] | "
           f"unseen FPIR@N [95% CI] | unseen TAR |",
           "|---|---|---|---|---|---|---|---|"]
    ok = [r for r in rows if "unseen" in r]
    for r in rows:
        if "unseen" not in r:
            out.append(f"| {r['seed']} | {r['calibrated_on']}/{r['held_out']} | refused: {r['refused'][:80]} | | | | | |")
            continue
        u, f = r["unseen"], r["unseen"]["fpir"]
        far = f"{pct(u['far'])} [{pct(u['far_interval'][0])}-{pct(u['far_interval'][1])}]" if u["far"] is not None else "n/a"
        fp = (f"{pct(f['fpir'], 2)} [{pct(f['interval'][0], 2)}-{pct(f['interval'][1], 2)}] N={f['measured_at']}"
              if f.get("fpir") is not None else "n/a")
        out.append(f"| {r['seed']} | {r['calibrated_on']}/{r['held_out']} | {r['calib_impostors']} | {r['threshold']:.4f} "
                   f"({r['before_margin']:.4f}+{a.margin:g}) | {u['impostor_pairs']} | {far} | {fp} | {pct(u['tar'], 1)} |")
    if not ok:
        return out
    far_ok = sum(1 for r in ok if r["unseen"]["far"] is not None and r["unseen"]["far"] <= a.target_far)
    far_lo = sum(1 for r in ok if r["unseen"]["far"] is not None and r["unseen"]["far_interval"][0] <= a.target_far)
    fp = [r["unseen"]["fpir"] for r in ok if r["unseen"]["fpir"].get("fpir") is not None]
    fp_ok = sum(1 for f in fp if f["fpir"] <= fpir_for_far(a.target_far, f["measured_at"]))
    nm = [r["unseen_no_margin"] for r in ok]
    out += ["",
            "| unseen half, min / median / max | with the margin | without it (CP bound only) | claim |",
            "|---|---|---|---|",
            f"| threshold | {' / '.join(f'{v:.4f}' for v in np.quantile([r['threshold'] for r in ok], [0, .5, 1]))} | "
            f"{' / '.join(f'{v:.4f}' for v in np.quantile([r['before_margin'] for r in ok], [0, .5, 1]))} | |",
            f"| FAR | {spread([r['unseen']['far'] for r in ok])} | {spread([u['far'] for u in nm])} | {pct(a.target_far)} |",
            f"| FPIR at N={a.gallery_size} | {spread([f['fpir'] for f in fp])} | "
            f"{spread([u['fpir'].get('fpir') for u in nm])} | {pct(fpir_claim)} |",
            f"| TAR (same-identity pairs) | {spread([r['unseen']['tar'] for r in ok])} | {spread([u['tar'] for u in nm])} | |",
            f"| splits with unseen FAR <= claim | {far_ok}/{len(ok)} | "
            f"{sum(1 for u in nm if u['far'] is not None and u['far'] <= a.target_far)}/{len(ok)} | |",
            f"| splits with unseen FPIR <= claim | {fp_ok}/{len(fp)} | "
            f"{sum(1 for u in nm if u['fpir'].get('fpir') is not None and u['fpir']['fpir'] <= fpir_for_far(a.target_far, u['fpir']['measured_at']))}/{len(fp)} | |",
            f"| splits whose unseen FAR interval reaches the claim | {far_lo}/{len(ok)} | | |"]
    if len(fp) < len(ok):
        out.append(f"\n({len(ok) - len(fp)} splits: FPIR at N={a.gallery_size} not measurable on the unseen half)")
    return out


def derive(ls: LabelledPhotos, a: argparse.Namespace) -> list[str]:
    """The margin from the data: how far above a half's calibrated threshold the other half needed to be."""
    shifts = []
    for seed in range(1000, 1000 + a.derive):
        keep, held = split_identities(ls, 0.5, seed, a.within_families)
        try:
            res = rule(ls, a, keep, 0.0, seed)
        except TooFewTrials:
            continue
        need = needed(ls, a, held)
        if need is not None:
            shifts.append(need - res["threshold"])
    if not shifts:
        return ["(no split could be calibrated)"]
    q = np.quantile(shifts, [0.5, 0.9, 0.95, 0.99, 1.0])
    return [f"\nmargin derivation over {len(shifts)} splits (seeds 1000..{999 + a.derive}): threshold the unseen half needed "
            f"for FAR {a.target_far:g} and FPIR {fpir_for_far(a.target_far, a.gallery_size):.4g} at N={a.gallery_size} minus the calibrated half's (no margin): median {q[0]:+.4f}, 90% {q[1]:+.4f}, "
            f"95% {q[2]:+.4f}, 99% {q[3]:+.4f}, max {q[4]:+.4f} -> a margin of {max(q[2], 0):.4f} keeps the claim in 95% "
            f"of splits ({sum(s <= a.margin for s in shifts)}/{len(shifts)} with {a.margin:g})"]


def across(sets: dict[str, LabelledPhotos], a: argparse.Namespace) -> list[str]:
    """Calibrated on all of one population, measured on all of another (and the shipped default on each)."""
    default = load_config().matching
    out = [f"\n## one population's threshold on another (claim FAR {pct(a.target_far)}, FPIR at N={a.gallery_size})\n",
           "| calibrated on | threshold | measured on | FAR [95% CI] | FPIR@N [95% CI] | TAR |", "|---|---|---|---|---|---|"]
    thresholds = {"shipped default": default.threshold}
    for name, ls in sets.items():
        try:
            thresholds[name] = rule(ls, a, None, a.margin)["threshold"]
        except TooFewTrials as exc:
            out.append(f"| {name} | refused: {exc} | | | | |")
    for src, thr in thresholds.items():
        for name, ls in sets.items():
            m = measure_at(ls, thr, gallery_size=a.gallery_size, enroll=a.enroll, within_families=a.within_families,
                           far_claim=a.target_far)
            f = m["fpir"]
            fp = (f"{pct(f['fpir'], 2)} [{pct(f['interval'][0], 2)}-{pct(f['interval'][1], 2)}] N={f['measured_at']}"
                  if f.get("fpir") is not None else "n/a")
            out.append(f"| {src} | {thr:.4f} | {name} (all) | {pct(m['far'])} [{pct(m['far_interval'][0])}-"
                       f"{pct(m['far_interval'][1])}] | {fp} | {pct(m['tar'], 1)} |")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", action="append", required=True, type=Path, help="labelled folder ROOT/<name>/<i>.jpg")
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="first split's seed")
    ap.add_argument("--target-far", type=float, default=0.001)
    ap.add_argument("--margin", type=float, default=DEFAULT_MARGIN)
    ap.add_argument("--gallery-size", type=int, default=5, help="N for FPIR (a half must hold a family of N+1)")
    ap.add_argument("--enroll", type=int, default=3)
    ap.add_argument("--across-families", dest="within_families", action="store_false",
                    help="impostors across families too (default: within one family, as MANIFEST asks)")
    ap.add_argument("--derive", type=int, default=0, help="also derive the margin from this many further splits")
    ap.add_argument("--cache", type=Path, default=None, help="directory for embedding caches (one .npz per root)")
    ap.add_argument("--json", type=Path, default=None, help="write every row here too")
    a = ap.parse_args()
    try:
        from stream.loaders import photo_analyzer

        analyzer = photo_analyzer(load_config(overrides={"engines": {"engine": "onnxruntime"}}))
        sets = {}
        for root in a.root:
            name = root.parent.name if root.name == "ids" else root.name
            sets[name] = embed(root, analyzer, a.cache / f"{name}.npz" if a.cache else None)
    except (EvalError, OSError) as exc:
        print(f"threshold_splits: error: {exc}", file=sys.stderr)
        return 2
    lines, dump, broken = [], {}, 0
    for name, ls in sets.items():
        rows = [one_split(ls, s, a) for s in range(a.seed, a.seed + a.splits)]
        dump[name] = rows
        lines += table(name, rows, a)
        broken += sum(1 for r in rows if "unseen" in r and not keeps(r["unseen"], a))
        if a.derive:
            lines += derive(ls, a)
    if len(sets) > 1:
        lines += across(sets, a)
    print("\n".join(lines))
    if a.json:
        a.json.write_text(json.dumps(dump, indent=1, default=float))
    if broken:
        print(f"threshold_splits: the rule broke its claim on the unseen half of {broken} split(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
