"""Thresholds from data: the score at a target false-accept rate (1:1) or FPIR at gallery size N (1:N),
and writing it into a config file."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from ruamel.yaml import YAML, YAMLError
from ruamel.yaml.comments import CommentedMap

from stream.config import ConfigError, load_config

from stream.eval.photos import EmbeddingCache, pair_scores, parse_pairs, require_photos
from stream.eval.rates import per_comparison_far_for_gallery, threshold_at_false_rate


def calibrate_from_pairs(analyzer, pairs_file: Path, root: Path, target: float, gallery_size: int | None,
                         progress: bool = True) -> dict:
    """Threshold for a target FAR (1:1) or, with ``gallery_size``, for a target FPIR at that N, from the
    impostor score distribution: per-comparison FAR = 1 - (1 - FPIR)^(1/N)."""
    pairs = parse_pairs(pairs_file)
    cache = EmbeddingCache(analyzer, root)
    require_photos(cache, pairs)
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
    """Set ``matching.threshold``, ``threshold_far`` and ``threshold_source`` in a YAML config.

    A round-trip YAML editor keeps the user's comments, key order and quoting. A file that cannot be parsed, or
    whose result would not load as a facewatch config, is refused and left untouched (``ConfigError``); the new
    text replaces the old atomically, so a crash never leaves half a config.
    """
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
    if matching is None:
        matching = data["matching"] = CommentedMap()
    elif not isinstance(matching, dict):
        raise ConfigError(f"{config_path}: matching is not a mapping; not changed")
    matching["threshold"] = float(result["threshold"])
    matching["threshold_far"] = float(f"{result['per_comparison_far']:.6g}")
    matching["threshold_source"] = result["source"]
    out = io.StringIO()
    yaml_rt.dump(data, out)
    tmp = config_path.with_name(f".{config_path.name}.calibrate.tmp")
    try:
        tmp.write_text(out.getvalue(), encoding="utf-8")
        load_config(tmp)  # what we write must load; else ConfigError and the original stays
        os.replace(tmp, config_path)
    finally:
        tmp.unlink(missing_ok=True)
