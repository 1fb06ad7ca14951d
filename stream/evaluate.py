"""Evaluation runs on real photos with the production code path (FaceAnalyzer + Gallery).

Policy for photos where no face is detected (after the padded retry): the photo counts as a failure to
enrol/acquire. Every pair that uses it gets score -inf (always rejected), so failures lower TAR instead
of being silently dropped; their number is reported.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stream.images import ImageError, load_image
from stream.tracker import iou_matrix
from stream.metrics_eval import (
    RateAt, auc, fnir_at_fpir, kfold_accuracy, per_comparison_far_for_gallery, roc_curve, tar_at_far,
    threshold_at_false_rate,
)

FAIL_SCORE = -np.inf


@dataclass(frozen=True)
class Pair:
    a: tuple[str, int]
    b: tuple[str, int]
    same: bool


def parse_pairs(path: Path) -> list[Pair]:
    """LFW pairs format: header ``S<TAB>N``, then S sets of N same (``name i j``) and N different pairs."""
    lines = [ln.split() for ln in Path(path).read_text().splitlines() if ln.strip()]
    if not lines or len(lines[0]) not in (1, 2):
        raise ValueError(f"{path}: not an LFW pairs file (bad header)")
    pairs = []
    for n, parts in enumerate(lines[1:], start=2):
        if len(parts) == 3:
            pairs.append(Pair((parts[0], int(parts[1])), (parts[0], int(parts[2])), True))
        elif len(parts) == 4:
            pairs.append(Pair((parts[0], int(parts[1])), (parts[2], int(parts[3])), False))
        else:
            raise ValueError(f"{path}:{n}: expected 3 or 4 fields, got {len(parts)}")
    return pairs


class EmbeddingCache:
    """Embedding of the largest face of each photo, computed once; None when no face / unreadable."""

    def __init__(self, analyzer, root: Path) -> None:
        self.analyzer, self.root = analyzer, Path(root)
        self.cache: dict[Path, np.ndarray | None] = {}
        self.failures: dict[str, str] = {}
        self.seconds = 0.0

    def path(self, name: str, i: int) -> Path:
        return self.root / name / f"{i}.jpg"

    def get(self, path: Path) -> np.ndarray | None:
        if path not in self.cache:
            t = time.perf_counter()
            try:
                faces = self.analyzer.analyze(load_image(path))
            except ImageError as exc:
                faces, self.failures[str(path)] = [], str(exc)
            self.seconds += time.perf_counter() - t
            if not faces and str(path) not in self.failures:
                self.failures[str(path)] = "no face detected"
            self.cache[path] = (
                max(faces, key=lambda f: float(np.prod(f.box[2:] - f.box[:2]))).embedding if faces else None
            )
        return self.cache[path]


@dataclass
class VerifyReport:
    pairs: int
    genuine: int
    impostor: int
    accuracy_mean: float
    accuracy_std: float
    fold_thresholds: list[float]
    auc: float
    tar_at_far: list[RateAt]
    images: int
    failed_images: int
    failure_policy: str = "photo without a detectable face: every pair using it is scored -inf (rejected)"
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def pair_scores(cache: EmbeddingCache, pairs: list[Pair], progress: bool = True, score=None) -> np.ndarray:
    """Similarity of each pair: cosine of the L2-normalised embeddings unless ``score(a, b)`` is given
    (tools/compare_peers.py scores face_recognition by its own negated Euclidean distance)."""
    scores = np.empty(len(pairs))
    for k, p in enumerate(tqdm(pairs, desc="pairs", unit="pair", disable=not progress)):
        a, b = cache.get(cache.path(*p.a)), cache.get(cache.path(*p.b))
        scores[k] = FAIL_SCORE if a is None or b is None else (float(a @ b) if score is None else score(a, b))
    return scores


def evaluate_verify(analyzer, pairs_file: Path, root: Path, fars=(1e-2, 1e-3, 1e-4), plot: Path | None = None,
                    progress: bool = True) -> VerifyReport:
    pairs = parse_pairs(pairs_file)
    cache = EmbeddingCache(analyzer, root)
    t = time.perf_counter()
    scores = pair_scores(cache, pairs, progress)
    same = np.array([p.same for p in pairs])
    finite = np.where(np.isfinite(scores), scores, -2.0)  # -inf -> below every real cosine
    mean, std, thrs = kfold_accuracy(finite, same)
    gen, imp = finite[same], finite[~same]
    report = VerifyReport(
        pairs=len(pairs), genuine=int(same.sum()), impostor=int((~same).sum()), accuracy_mean=mean,
        accuracy_std=std, fold_thresholds=thrs, auc=auc(gen, imp), tar_at_far=[tar_at_far(gen, imp, f) for f in fars],
        images=len(cache.cache), failed_images=len(cache.failures), seconds=time.perf_counter() - t,
    )
    if plot is not None:
        plot_roc(gen, imp, report, plot)
    return report


@contextmanager
def _plot(out: Path):
    """A headless 5x4 matplotlib axis saved to ``out`` (PNG) on exit: the one setup every report plot shares."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    try:
        yield ax
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        fig.savefig(out, dpi=120)
    finally:
        plt.close(fig)


def plot_roc(gen: np.ndarray, imp: np.ndarray, report: VerifyReport, out: Path) -> None:
    far, tar, _ = roc_curve(gen, imp)
    with _plot(out) as ax:
        ax.plot(np.maximum(far, 1e-5), tar, lw=1.5)
        for r in report.tar_at_far:
            if r.rate is not None:
                ax.plot([r.target], [r.rate], "o", label=f"TAR {r.rate:.3f} @ FAR {r.target:g} (thr {r.threshold:.4f})")
        ax.set_xscale("log")
        ax.set_xlabel("false accept rate")
        ax.set_ylabel("true accept rate")
        ax.set_title(f"ROC (AUC {report.auc:.4f}, {report.genuine}+{report.impostor} pairs)")
        ax.legend(fontsize=7, loc="lower right")


@dataclass
class IdentifyReport:
    identities: int
    enrolled_identities: int
    enroll_per_identity: int
    mated_probes: int
    nonmated_probes: int
    rank1: float
    fnir_at_fpir: list[RateAt]
    fpir_vs_n: list[dict] = field(default_factory=list)
    fixed_threshold: float = 0.0
    failed_images: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_identify(analyzer, root: Path, enroll: int = 3, fpirs=(1e-2, 1e-3), threshold: float = 0.9,
                      only: str | None = None, plot: Path | None = None, progress: bool = True, seed: int = 0,
                      workdir: Path | None = None) -> IdentifyReport:
    """Open-set 1:N through the real Gallery (SQLite + HNSW): every other identity (sorted) is enrolled with
    its first ``enroll`` photos; probes are the rest of their photos (mated) and all photos of the others
    (non-mated). FPIR at ``threshold`` is then measured on galleries of growing size N."""
    import tempfile

    from stream.gallery import Gallery

    cache = EmbeddingCache(analyzer, root)
    names = sorted(d.name for d in Path(root).iterdir() if d.is_dir() and (only is None or d.name.startswith(only)))
    photos = {n: sorted(Path(root, n).glob("*.jpg"), key=lambda p: (len(p.stem), p.stem)) for n in names}
    enrolled = [n for k, n in enumerate(names) if k % 2 == 0 and len(photos[n]) > enroll]
    others = [n for n in names if n not in enrolled]
    all_paths = [p for n in names for p in photos[n]]
    for p in tqdm(all_paths, desc="embedding", unit="img", disable=not progress):
        cache.get(p)
    tmp = tempfile.TemporaryDirectory(dir=workdir)
    gal = Gallery(Path(tmp.name) / "g")
    for n in enrolled:
        emb = [cache.get(p) for p in photos[n][:enroll]]
        emb = [e for e in emb if e is not None]
        if emb:
            gal.enroll(n, np.stack(emb))

    def probe(gallery, paths):
        embs = [cache.get(p) for p in paths]
        ok = [e for e in embs if e is not None]
        cands = gallery.search(np.stack(ok)) if ok else []
        it = iter(cands)
        return [next(it) if e is not None else None for e in embs]

    mated = [(n, p) for n in enrolled for p in photos[n][enroll:]]
    m_c = probe(gal, [p for _, p in mated])
    m_scores = np.array([c.score if c else -2.0 for c in m_c])
    m_correct = np.array([bool(c) and c.identity == n for c, (n, _) in zip(m_c, mated)])
    non = [p for n in others for p in photos[n]]
    n_scores = np.array([c.score if c else -2.0 for c in probe(gal, non)])
    report = IdentifyReport(
        identities=len(names), enrolled_identities=len(enrolled), enroll_per_identity=enroll,
        mated_probes=len(mated), nonmated_probes=len(non), rank1=float(m_correct.mean()) if len(mated) else 0.0,
        fnir_at_fpir=[fnir_at_fpir(m_scores, m_correct, n_scores, f) for f in fpirs], fixed_threshold=threshold,
        failed_images=len(cache.failures),
    )
    # FPIR at a fixed threshold as the gallery grows: random nested subsets of the enrolled identities.
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(enrolled))
    sizes = sorted({max(1, len(order) * k // 8) for k in range(1, 9)})
    for n_size in sizes:
        sub = Gallery(Path(tmp.name) / f"g{n_size}")
        for n in order[:n_size]:
            sub.enroll(n, np.stack([e for e in (cache.get(p) for p in photos[n][:enroll]) if e is not None]))
        s = np.array([c.score if c else -2.0 for c in probe(sub, non)])
        report.fpir_vs_n.append({"N": n_size, "fpir": float(np.mean(s >= threshold)), "nonmated": len(non)})
        sub.close()
    gal.close()
    tmp.cleanup()
    if plot is not None:
        with _plot(plot) as ax:
            ax.plot([r["N"] for r in report.fpir_vs_n], [r["fpir"] for r in report.fpir_vs_n], "o-")
            ax.set_xlabel("gallery size N (identities)")
            ax.set_ylabel(f"FPIR at threshold {threshold:.4f}")
    return report


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
    import re

    import yaml

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


def evaluate_detect(detector, images_dir: Path, truth_file: Path, iou_min: float = 0.5, plot: Path | None = None) -> dict:
    """Detection rate (found faces / labelled faces), miss rate (1 - detection rate) and false-detection
    rate (false detections / all detections), per face and per image, at the detector's threshold; plus a
    precision/recall curve over score thresholds and the mean latency per image."""
    truth = json.loads(Path(truth_file).read_text())["boxes"]
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
        with _plot(plot) as ax:
            ax.plot(recall, precision)
            ax.set_xlabel("recall")
            ax.set_ylabel("precision")
            ax.set_title(f"detection PR ({n_faces} faces, IoU >= {iou_min})")
    return out
