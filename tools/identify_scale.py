#!/usr/bin/env python3
"""FNIR at FPIR 1e-2 and 1e-3 for galleries of 10, 100, 1,000 and 10,000 identities. A benchmark, not a test.

The protocol is ``stream.eval.identify_scale`` (identity folds: strangers, enrolled, real distractors from every
other dev photo, synthetic distractors only beyond them and checked against the real ones). All ``--root``
folders are pooled (one model, so one score scale) and every photo is embedded once; ``--cache DIR`` reuses
tools/threshold_splits.py's caches (``DIR/<name>_ids_<embedder id>.npz``), and no model is loaded when they hold
every photo. Prints, per ``--profile``, the README table and the synthetic-vs-real check table::

    python tools/identify_scale.py --profile fast --root ../shared/data/faces/wild_dev/ids \\
        --root ../shared/data/faces/lab_dev/ids --cache /tmp/fw-cache

Exit status: 2 on bad input (one line), 1 when a measured FPIR interval lies entirely above its promise (rows
whose synthetic distractors failed the check do not count: they are lower bounds), else 0.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engines.files import ModelError  # noqa: E402
from engines.profiles import PROFILE_NAMES  # noqa: E402
from stream.config import load_config  # noqa: E402
from stream.eval.identify_scale import (GENERATORS, check_markdown, identify_at_scale, markdown,  # noqa: E402
                                        merge)
from stream.eval.photos import EvalError  # noqa: E402


class _LazyAnalyzer:
    """The profile's photo analyzer, loaded only when a photo is missing from the cache."""

    def __init__(self, cfg) -> None:
        self.cfg, self._real = cfg, None

    def analyze(self, image):
        if self._real is None:
            from stream.loaders import photo_analyzer

            print("# embedding photos missing from the cache (loading the models)", file=sys.stderr)
            self._real = photo_analyzer(self.cfg)
        return self._real.analyze(image)


def _numbers(text: str, kind, what: str) -> list:
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise EvalError(f"{what} {text!r}: expected comma-separated numbers") from None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, action="append", required=True,
                    help="labelled folder ROOT/<identity>/<i>.jpg (repeatable; pooled)")
    ap.add_argument("--profile", choices=PROFILE_NAMES, action="append", default=None,
                    help="recognition profile (repeatable; default fast)")
    ap.add_argument("--cache", type=Path, default=None, help="directory of embedding caches (one .npz per root)")
    ap.add_argument("--enroll", type=int, default=3, help="photos per enrolled identity (and per distractor)")
    ap.add_argument("--sizes", default="10,100,1000,10000", help="gallery sizes N")
    ap.add_argument("--fpirs", default="1e-2,1e-3", help="target FPIRs")
    ap.add_argument("--folds", type=int, default=10, help="identity folds (each fold's identities are the strangers)")
    ap.add_argument("--synthetic", choices=[*GENERATORS, "none"], default="swap",
                    help="synthetic distractors beyond the real ones (none: real only)")
    ap.add_argument("--count", choices=("samples", "identities"), default="samples",
                    help="the promise's comparisons per probe: N * enroll samples, or N identities")
    ap.add_argument("--margin", type=float, default=0.0, help="added to the promise threshold (default 0: bare rule)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="write every row here too")
    a = ap.parse_args()
    profiles = a.profile or ["fast"]
    dump, lines, broken = {}, [], 0
    try:
        from threshold_splits import cache_key, embed

        sizes = _numbers(a.sizes, int, "--sizes")
        fpirs = _numbers(a.fpirs, float, "--fpirs")
        if a.cache is not None and not a.cache.is_dir():
            raise EvalError(f"--cache {a.cache}: no such directory")
        if a.json is not None and not a.json.resolve().parent.is_dir():
            raise EvalError(f"--json {a.json}: no such directory {a.json.parent}")
        for profile in profiles:
            cfg = load_config(overrides={"engines": {"engine": "onnxruntime"}, "recognition": {"profile": profile}})
            key = cache_key(cfg)
            analyzer = _LazyAnalyzer(cfg)
            sets = []
            for root in a.root:
                name = root.parent.name if root.name == "ids" else root.name
                sets.append(embed(root, analyzer, a.cache / f"{name}_ids_{key}.npz" if a.cache else None,
                                  cfg.quality.max_clipped))
            t = time.perf_counter()
            rep = identify_at_scale(merge(sets), sizes, fpirs, enroll=a.enroll, folds=a.folds, seed=a.seed,
                                    synthetic=None if a.synthetic == "none" else GENERATORS[a.synthetic],
                                    count=a.count, margin=a.margin)
            print(f"# {profile}: {time.perf_counter() - t:.1f} s", file=sys.stderr)
            title = f"{profile} ({cfg.embedder_id})"
            lines += markdown(rep, title) + [""] + check_markdown(rep.check, title) + [""]
            dump[profile] = rep.to_dict()
            broken += len(rep.broken)
    except (EvalError, ModelError, OSError, ValueError) as exc:
        print(f"identify_scale: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines).rstrip())
    if a.json:
        a.json.write_text(json.dumps(dump, indent=1, default=float))
    if broken:
        print(f"identify_scale: {broken} measured FPIR interval(s) lie entirely above the promise", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
