"""Detection evaluation: detection rate, miss rate and false-detection rate at IoU >= 0.5, PR curve, latency."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from engines.detections import iou_matrix
from stream.eval.photos import EvalError, read_text_file, require_plotting
from stream.eval.plots import figure
from stream.media.images import load_image


def match_detections(truth: np.ndarray, boxes: np.ndarray, iou_min: float = 0.5) -> np.ndarray:
    """Greedy one-to-one matching (detections in score order); True per detection that hits a face."""
    hit = np.zeros(len(boxes), bool)
    if len(truth) == 0 or len(boxes) == 0:
        return hit
    iou = iou_matrix(boxes, truth)
    used = np.zeros(len(truth), bool)
    for d in range(len(boxes)):
        cand = np.where(~used, iou[d], -1)
        j = int(np.argmax(cand))
        if cand[j] >= iou_min:
            used[j] = hit[d] = True
    return hit


def read_truth(path: Path, images_dir: Path) -> dict[str, list[list[float]]]:
    """``{"boxes": {"<image>": [[x, y, w, h], ...]}}``, every image present under ``images_dir``; else EvalError."""
    try:
        data = json.loads(read_text_file(path, "detection ground truth JSON"))
    except json.JSONDecodeError as exc:
        raise EvalError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    boxes = data.get("boxes") if isinstance(data, dict) else None
    if not isinstance(boxes, dict) or not boxes:
        raise EvalError(f'{path}: expected {{"boxes": {{"<image file>": [[x, y, w, h], ...]}}}} with at least one image')
    for name, items in boxes.items():
        ok = isinstance(items, list) and all(
            isinstance(b, list) and len(b) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in b)
            and b[2] > 0 and b[3] > 0 for b in items)
        if not ok:
            raise EvalError(f"{path}: boxes of {name!r} must be a list of [x, y, w, h] with positive w and h")
        if not (images_dir / name).is_file():
            raise EvalError(f"--images {images_dir}: {name} (named in {path.name}) is not there")
    return boxes


def evaluate_detect(detector, images_dir: Path, truth_file: Path, iou_min: float = 0.5, plot: Path | None = None) -> dict:
    """Detection rate (found faces / labelled faces), miss rate (1 - detection rate) and false-detection
    rate (false detections / all detections), per face and per image, at the detector's threshold; plus a
    precision/recall curve over score thresholds and the mean latency per image."""
    require_plotting(plot)
    truth = read_truth(Path(truth_file), Path(images_dir))
    keep_thr = detector.score_threshold
    detector.score_threshold = 0.05  # collect low scores for the PR curve, then cut at keep_thr
    all_scores, all_hits, per_image, n_faces, times = [], [], [], 0, []
    try:
        for name, boxes in sorted(truth.items()):
            img = load_image(Path(images_dir) / name)
            t = time.perf_counter()
            faces = detector.detect(img)
            times.append(time.perf_counter() - t)
            gt = np.array([[x, y, x + w, y + h] for x, y, w, h in boxes], float).reshape(-1, 4)
            hits = match_detections(gt, faces.boxes, iou_min)
            all_scores.append(faces.scores)
            all_hits.append(hits)
            n_faces += len(gt)
            sel = faces.scores >= keep_thr
            h = match_detections(gt, faces.boxes[sel], iou_min)
            per_image.append({"image": name, "faces": len(gt), "found": int(h.sum()), "false": int((~h).sum())})
    finally:
        detector.score_threshold = keep_thr
    scores, hits = np.concatenate(all_scores), np.concatenate(all_hits)
    order = np.argsort(-scores)
    tp = np.cumsum(hits[order])
    precision = tp / np.arange(1, len(order) + 1)
    recall = tp / max(n_faces, 1)
    found = sum(r["found"] for r in per_image)
    false = sum(r["false"] for r in per_image)
    out = {
        "images": len(per_image), "faces": n_faces, "threshold": keep_thr, "iou_min": iou_min,
        "detection_rate": found / max(n_faces, 1), "miss_rate": 1 - found / max(n_faces, 1),
        "false_detection_rate": false / max(found + false, 1), "false_per_image": false / max(len(per_image), 1),
        "images_all_found": sum(r["found"] == r["faces"] for r in per_image) / max(len(per_image), 1),
        "mean_latency_ms": 1000 * float(np.mean(times)), "per_image": per_image,
        "pr_curve": {"score": scores[order].round(4).tolist(), "precision": precision.round(4).tolist(),
                     "recall": recall.round(4).tolist()},
    }
    if plot is not None:
        with figure(plot) as ax:
            ax.plot(recall, precision)
            ax.set_xlabel("recall")
            ax.set_ylabel("precision")
            ax.set_title(f"detection PR ({n_faces} faces, IoU >= {iou_min})")
    return out
