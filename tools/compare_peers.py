#!/usr/bin/env python3
"""facewatch vs the ``face_recognition`` library (PyPI, dlib-based), same data, one run, one table.

A benchmark, not a test. Both systems use dlib's ResNet face descriptor; they differ in everything
around it: face_recognition detects with dlib's HOG detector (CNN with ``--peer-model cnn``) and aligns
with dlib's 5-point shape predictor, facewatch with RetinaFace, its own alignment, ONNX Runtime and
cosine scores. Both are scored by the same metric code as ``facewatch eval verify``; photos where a
system finds no face are failures for that system (pairs scored -inf), as in facewatch's own policy.

Verification: the LFW-protocol pairs (10-fold accuracy, AUC, TAR at FAR 1e-2 and 1e-3), plus the
accuracy at each system's own out-of-the-box threshold (face_recognition: distance <= 0.6; facewatch:
the calibrated threshold in config/default.yaml) and the false-accept rate that threshold gives.
Video: a generated 720p clip where an enrolled face (the scikit-image astronaut) is visible in known
frames and a non-enrolled face (a wild_dev photo) in others: facewatch runs ``scan`` (the full
multi-process pipeline), face_recognition the loop from its own video example (locate, encode,
compare with tolerance 0.6 on every frame). Wall times are end to end, start-up included.

face_recognition declares a dependency on the ``dlib`` source package (a long C++ build); with the
prebuilt ``dlib-bin`` wheel (in the ``dev`` extra) install it without dependencies::

    pip install dlib-bin face_recognition_models setuptools && pip install --no-deps face_recognition==1.3.0
    python tools/compare_peers.py --pairs ../shared/data/faces/wild_dev/pairs.txt --root ../shared/data/faces/wild_dev/ids
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stream.eval.photos import EmbeddingCache, pair_scores, parse_pairs  # noqa: E402
from stream.eval.rates import auc, kfold_accuracy, tar_at_far  # noqa: E402

PEER_TOLERANCE = 0.6  # face_recognition's documented default distance threshold


@dataclass
class PeerFace:
    box: np.ndarray  # x1, y1, x2, y2 (what EmbeddingCache uses to pick the largest face)
    embedding: np.ndarray


class PeerAnalyzer:
    """face_recognition behind facewatch's ``analyze(image) -> faces`` shape, so both share one evaluation."""

    def __init__(self, model: str, upsample: int) -> None:
        import face_recognition

        self.fr, self.model, self.upsample = face_recognition, model, upsample

    def analyze(self, image_bgr: np.ndarray) -> list[PeerFace]:
        rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
        locs = self.fr.face_locations(rgb, number_of_times_to_upsample=self.upsample, model=self.model)
        encs = self.fr.face_encodings(rgb, known_face_locations=locs)
        return [PeerFace(np.array([l_, t, r, b], np.float32), e) for (t, r, b, l_), e in zip(locs, encs)]


def verify_row(analyzer, pairs_file: Path, root: Path, score, own_threshold: float) -> dict:
    pairs = parse_pairs(pairs_file)
    cache = EmbeddingCache(analyzer, root)
    t = time.perf_counter()
    scores = pair_scores(cache, pairs, progress=False, score=score)
    wall = time.perf_counter() - t
    same = np.array([p.same for p in pairs])
    finite = np.where(np.isfinite(scores), scores, np.min(scores[np.isfinite(scores)]) - 1.0)
    mean, std, _ = kfold_accuracy(finite, same)
    gen, imp = finite[same], finite[~same]
    accept = finite >= own_threshold
    return {"acc": mean, "std": std, "auc": auc(gen, imp), "tar2": tar_at_far(gen, imp, 1e-2).rate,
            "tar3": tar_at_far(gen, imp, 1e-3).rate, "own_acc": float(np.mean(accept == same)),
            "own_far": float(np.mean(accept[~same])), "own_tar": float(np.mean(accept[same])),
            "images": len(cache.cache), "no_face": len(cache.failures), "wall": wall,
            "ms_per_image": 1000 * cache.seconds / max(1, len(cache.cache))}


# ----------------------------------------------------------------------------- video
def make_video(work: Path, other_photo: Path | None) -> tuple[Path, set[int], set[int]]:
    """720p, 25 fps, 6 s: the astronaut in frames 25-74, another person in 88-137 (when a photo is given)."""
    from stream.media.clips import Appearance, astronaut_head, render_clip
    from stream.media.images import load_image

    apps = [Appearance(astronaut_head(), 1.0, 3.0)]
    if other_photo is not None:
        apps.append(Appearance(load_image(other_photo), 3.5, 5.5))
    clip = render_clip(work / "peers.mp4", apps, size=(1280, 720), fps=25.0, duration_s=6.0)
    return clip, set(range(25, 75)), set(range(88, 138)) if other_photo is not None else set()


def facewatch_video(clip: Path, gallery: Path) -> tuple[set[int], float]:
    """Frames where facewatch's pipeline named the astronaut (tracks decided by vote), and the wall time."""
    from stream.scan.run import scan_videos
    from stream.config import load_config

    cfg = load_config(overrides={"data_dir": str(clip.parent), "matching": {"gallery": str(gallery)}})
    t = time.perf_counter()
    report = scan_videos(cfg, [str(clip)], 1, str(gallery), observations=True, progress=False, timeout_s=900)
    wall = time.perf_counter() - t
    v = report.videos[0]
    named = {str(tid) for tid, who in v.track_identity.items() if who == "astronaut"}
    return {int(f) for f, tid, _box in v.observations or [] if str(tid) in named}, wall


def peer_video(clip: Path, known: np.ndarray, model: str, upsample: int) -> tuple[set[int], float]:
    import cv2
    import face_recognition as fr

    t = time.perf_counter()
    cap = cv2.VideoCapture(str(clip))
    hits, i = set(), 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        rgb = np.ascontiguousarray(frame[:, :, ::-1])
        locs = fr.face_locations(rgb, number_of_times_to_upsample=upsample, model=model)
        for enc in fr.face_encodings(rgb, known_face_locations=locs):
            if fr.compare_faces([known], enc, tolerance=PEER_TOLERANCE)[0]:
                hits.add(i)
        i += 1
    cap.release()
    return hits, time.perf_counter() - t


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=Path, required=True, help="LFW-format pairs file")
    ap.add_argument("--root", type=Path, required=True, help="IDS_DIR/<name>/<i>.jpg")
    ap.add_argument("--peer-model", choices=("hog", "cnn"), default="hog", help="face_recognition's detector")
    ap.add_argument("--skip-video", action="store_true")
    args = ap.parse_args()
    try:
        import face_recognition  # noqa: F401
    except Exception as exc:  # ImportError, or face_recognition_models' own SystemExit-free failure
        sys.exit(f"compare_peers: face_recognition is not importable ({exc}); see the install line in --help")

    from stream.config import load_config
    from stream.loaders import photo_analyzer
    from stream.media.clips import astronaut_head
    from stream.store.gallery import Gallery

    cfg = load_config(overrides={"engines": {"engine": "onnxruntime"}})
    threshold = cfg.threshold
    ours = photo_analyzer(cfg)
    peer = PeerAnalyzer(args.peer_model, upsample=1)
    print(f"# facewatch vs face_recognition on {args.pairs} (threshold: facewatch {threshold}, "
          f"face_recognition distance <= {PEER_TOLERANCE})\n")
    rows = {
        "facewatch (RetinaFace + dlib ResNet, ONNX Runtime)": verify_row(ours, args.pairs, args.root, lambda a, b: float(a @ b), threshold),
        f"face_recognition 1.3 ({args.peer_model.upper()} + dlib ResNet)": verify_row(
            peer, args.pairs, args.root, lambda a, b: -float(np.linalg.norm(a - b)), -PEER_TOLERANCE),
    }
    print("| system | 10-fold acc | AUC | TAR@FAR1e-2 | TAR@FAR1e-3 | acc / TAR / FAR at own threshold | no face | ms/image | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['acc']:.2%} ± {r['std']:.2%} | {r['auc']:.4f} | {r['tar2']:.2%} | {r['tar3']:.2%} | "
              f"{r['own_acc']:.2%} / {r['own_tar']:.2%} / {r['own_far']:.2%} | {r['no_face']}/{r['images']} | "
              f"{r['ms_per_image']:.1f} | {r['wall']:.1f} |")
    (fw, fr_) = rows.values()
    print(f"\nwall-time ratio face_recognition / facewatch: {fr_['wall'] / fw['wall']:.2f}x; "
          f"10-fold accuracy difference {100 * (fw['acc'] - fr_['acc']):+.2f} points")
    if args.skip_video:
        return

    import face_recognition as frlib

    work = Path(tempfile.mkdtemp(prefix="fw-peers-"))
    others = sorted(p for p in args.root.glob("*/1.jpg"))
    clip, truth, other = make_video(work, others[0] if others else None)
    head_rgb = np.ascontiguousarray(astronaut_head()[:, :, ::-1])
    gallery = work / "gallery"
    Gallery(gallery).enroll("astronaut", ours.analyze(astronaut_head())[0].embedding[None])
    known = frlib.face_encodings(head_rgb)[0]
    fw_hits, fw_wall = facewatch_video(clip, gallery)
    pr_hits, pr_wall = peer_video(clip, known, args.peer_model, upsample=0)
    print(f"\n# Video: {clip.name}, 1280x720, 150 frames; astronaut (enrolled) in {len(truth)} frames, "
          f"another person (not enrolled) in {len(other)}\n")
    print("| system | astronaut frames found | false hits (frames without the astronaut) | wall s | fps |")
    print("|---|---|---|---|---|")
    for name, hits, wall in (("facewatch scan (pipeline, every frame)", fw_hits, fw_wall),
                             (f"face_recognition loop ({args.peer_model.upper()}, no upsampling)", pr_hits, pr_wall)):
        print(f"| {name} | {len(hits & truth)}/{len(truth)} | {len(hits - truth)} | {wall:.1f} | {150 / wall:.1f} |")
    print(f"\nvideo wall-time ratio face_recognition / facewatch: {pr_wall / fw_wall:.2f}x (facewatch includes "
          "starting its 5 processes and loading models)")


if __name__ == "__main__":
    main()
