#!/usr/bin/env python3
"""Fit the ``accurate`` profile's fusion weights on labelled photos, and show what fusion buys. A benchmark.
``--profile P`` measures another profile the same way (a one-member profile: its TAR only).

The fusion (``engines/profiles.py``) z-normalises each member's cosine with the mean and standard deviation of
its own impostor cosines and sums the z-scores. This script:

1. embeds every photo of ``--root`` once with the ``accurate`` profile and splits each fused vector back into its
   members' unit embeddings (the fused vector is ``[sqrt(a1) e1, sqrt(a2) e2]``, so the split is exact whatever
   weights made it);
2. measures each member's impostor statistics on every within-family cross-identity pair (``--across-families``
   for all) and prints the ``Member(...)`` lines for ``engines/profiles.py``;
3. says whether the weights generalise: ``--splits`` seeded identity halves, the weights fitted on one half and TAR
   measured on the other, unseen half at FAR 1e-2 / 1e-3 / 1e-4 for each member alone and for the fusion. Those
   thresholds are read off the unseen half's own impostor scores, so the table compares models and rules; it is
   not a calibration (``facewatch calibrate`` is).

Exit status 2 on bad input::

    python tools/fit_fusion.py --root ../shared/data/faces/wild_dev/ids --cache /tmp/fw-cache
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engines.files import ModelError  # noqa: E402
from engines.profiles import PROFILE_NAMES, profile  # noqa: E402
from stream.config import ConfigError, load_config  # noqa: E402
from stream.eval.calibrate import split_identities  # noqa: E402
from stream.eval.photos import EvalError, LabelledPhotos, genuine_scores, impostor_scores  # noqa: E402
from stream.eval.rates import accepts, threshold_at_false_rate  # noqa: E402
from stream.loaders import photo_analyzer  # noqa: E402
from tools.threshold_splits import embed  # noqa: E402

FARS = (1e-2, 1e-3, 1e-4)


def members_of(ls: LabelledPhotos, profile_name: str = "accurate") -> dict[str, LabelledPhotos]:
    """Each member's unit embeddings, cut out of the fused vectors (exact: fused = [sqrt(a_i) e_i])."""
    prof = profile(profile_name)
    out, start = {}, 0
    for m in prof.members:
        part = ls.emb[:, start:start + m.dim]
        start += m.dim
        part = part / np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12)
        out[m.model] = LabelledPhotos(ls.root, ls.identities, ls.paths, ls.ident, part.astype(np.float32), ls.failed)
    return out


def stats(ls: LabelledPhotos, ids: np.ndarray | None, within: bool) -> tuple[float, float]:
    imp, _ = impostor_scores(ls, ids, within_families=within)
    return float(imp.mean()), float(imp.std())


def fused(members: dict[str, LabelledPhotos], st: dict[str, tuple[float, float]]) -> LabelledPhotos:
    """Fused unit vectors with weights a_i = (1/sd_i) / sum(1/sd_j) from ``st``."""
    inv = {k: 1.0 / sd for k, (_, sd) in st.items()}
    total = sum(inv.values())
    parts = [np.sqrt(inv[k] / total) * ls.emb for k, ls in members.items()]
    any_ls = next(iter(members.values()))
    return LabelledPhotos(any_ls.root, any_ls.identities, any_ls.paths, any_ls.ident,
                          np.concatenate(parts, axis=1).astype(np.float32), any_ls.failed)


def tars(ls: LabelledPhotos, ids: np.ndarray, within: bool) -> list[float]:
    imp, _ = impostor_scores(ls, ids, within_families=within)
    gen = genuine_scores(ls, ids)
    return [float(np.mean(accepts(gen, threshold_at_false_rate(imp, f)[0]))) for f in FARS]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, type=Path, help="labelled folder ROOT/<name>/<i>.jpg")
    ap.add_argument("--splits", type=int, default=5, help="identity halves for the unseen-half check")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--across-families", action="store_true", help="impostors across families too")
    ap.add_argument("--cache", type=Path, default=None, help="directory for the embedding cache")
    ap.add_argument("--profile", default="accurate", choices=PROFILE_NAMES,
                    help="profile to measure (one member: its TAR only, no fusion) [default: accurate]")
    a = ap.parse_args(argv)
    within = not a.across_families
    try:
        cfg = load_config(overrides={"recognition": {"profile": a.profile}})
        cache = None
        if a.cache:
            a.cache.mkdir(parents=True, exist_ok=True)
            cache = a.cache / f"{a.root.resolve().parent.name}_{a.root.name}_{cfg.embedder_id.replace(':', '_')}.npz"
            # ungated (no exposure gate: this compares models on every photo), so its own cache name
        ls = embed(a.root, photo_analyzer(cfg), cache)
    except (ConfigError, EvalError, ModelError, OSError) as exc:
        print(f"fit_fusion: {exc}", file=sys.stderr)
        return 2
    mem = members_of(ls, a.profile)
    fuse = len(mem) > 1
    every = np.arange(len(ls.identities))
    st = {k: stats(m, None, within) for k, m in mem.items()}
    print(f"# {a.root}: {len(ls.identities)} identities, {len(ls.paths)} photos; impostors "
          f"{'within families' if within else 'across all'}")
    print("# impostor statistics on every photo (paste into engines/profiles.py):")
    for k, (mu, sd) in st.items():
        print(f'    Member("{k}", {mem[k].emb.shape[1]}, {mu:.4f}, {sd:.4f}),')
    inv = {k: 1 / sd for k, (_, sd) in st.items()}
    print("# weights: " + ", ".join(f"{k} {v / sum(inv.values()):.4f}" for k, v in inv.items()))

    print(f"\nTAR on the unseen half (weights fitted on the other half), {a.splits} identity splits:")
    names = [*mem, "fused"] if fuse else [*mem]
    print("  split  " + "  ".join(f"{name:>26s}" for name in names))
    print("         " + "  ".join(f"{'@1e-2   @1e-3   @1e-4':>26s}" for _ in names))
    rows = []
    for s in range(a.splits):
        fit, held = split_identities(ls, 0.5, seed=a.seed + s, within_families=within)
        st_fit = {k: stats(m, fit, within) for k, m in mem.items()}
        row = [tars(m, held, within) for m in mem.values()] + ([tars(fused(mem, st_fit), held, within)] if fuse else [])
        rows.append(row)
        print(f"  {s:5d}  " + "  ".join(" ".join(f"{100 * t:6.1f}%" for t in r) for r in row))
    med = np.median(np.array(rows), axis=0)
    print("  median " + "  ".join(" ".join(f"{100 * t:6.1f}%" for t in r) for r in med))
    if fuse:
        gain = 100 * (med[-1][1] - max(med[i][1] for i in range(len(mem))))
        print(f"\nfused minus the best single member at FAR 1e-3 (median over splits): {gain:+.1f} points")
    all_rows = [tars(m, every, within) for m in mem.values()] + ([tars(fused(mem, st), every, within)] if fuse else [])
    print("every identity, weights fitted on every identity: " + "; ".join(
        f"{name} " + " / ".join(f"{100 * t:.1f}%" for t in r) for name, r in zip(names, all_rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
