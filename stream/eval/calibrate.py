"""Thresholds from data: the score at a target false-accept rate (1:1) or FPIR at gallery size N (1:N),
and writing it into a config file."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import yaml

from stream.eval.photos import EmbeddingCache, pair_scores, parse_pairs
from stream.eval.rates import per_comparison_far_for_gallery, threshold_at_false_rate


def calibrate_from_pairs(analyzer, pairs_file: Path, root: Path, target: float, gallery_size: int | None,
                         progress: bool = True) -> dict:
    """Threshold for a target FAR (1:1) or, with ``gallery_size``, for a target FPIR at that N, from the
    impostor score distribution: per-comparison FAR = 1 - (1 - FPIR)^(1/N)."""
    pairs = parse_pairs(pairs_file)
    cache = EmbeddingCache(analyzer, root)
    scores = pair_scores(cache, pairs, progress)
    same = np.array([p.same for p in pairs])
    imp = np.where(np.isfinite(scores[~same]), scores[~same], -2.0)
    gen = np.where(np.isfinite(scores[same]), scores[same], -2.0)
    far = per_comparison_far_for_gallery(target, gallery_size) if gallery_size else target
    if len(imp) * far < 1:
        raise ValueError(
            f"{len(imp)} impostor pairs cannot resolve a per-comparison FAR of {far:.2g}"
            f"{f' (FPIR {target:g} at N={gallery_size})' if gallery_size else ''}; need >= {int(np.ceil(1 / far))}"
        )
    thr, achieved = threshold_at_false_rate(imp, far)
    what = f"FPIR {target:g} at gallery size {gallery_size} (per-comparison FAR {far:.3g})" if gallery_size else f"FAR {target:g}"
    return {
        "threshold": round(thr, 4), "target": target, "gallery_size": gallery_size, "per_comparison_far": far,
        "achieved_far": achieved, "tar": float(np.mean(gen >= thr)),
        "source": f"facewatch calibrate --pairs {pairs_file} ({int(same.sum())} same + {len(imp)} different pairs): "
                  f"{what}; measured FAR {achieved:.3%}, TAR {np.mean(gen >= thr):.1%}",
    }


def write_threshold(config_path: Path, result: dict) -> None:
    """Update ``matching.threshold*`` in a YAML config, keeping its comments when the keys are there."""
    text = config_path.read_text() if config_path.exists() else ""
    far = result["per_comparison_far"]
    new = {"threshold": f"{result['threshold']}", "threshold_far": f"{far:.6g}", "threshold_source": json.dumps(result["source"])}
    if all(re.search(rf"^\s+{k}:", text, re.M) for k in new):
        for k, v in new.items():
            text = re.sub(rf"^(\s+{k}:)[^\n#]*(\s*#[^\n]*)?$", lambda m, v=v: f"{m.group(1)} {v}" + (f"  {m.group(2).strip()}" if m.group(2) else ""), text, count=1, flags=re.M)
    else:
        data = yaml.safe_load(text) or {}
        m = data.setdefault("matching", {})
        m.update({"threshold": result["threshold"], "threshold_far": far, "threshold_source": result["source"]})
        text = yaml.safe_dump(data, sort_keys=False)
    config_path.write_text(text)
