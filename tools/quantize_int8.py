#!/usr/bin/env python3
"""Do int8-quantised models keep their accuracy, and how much faster are they on this CPU?

Why: on a 2-core CPU the detector (tens of ms per 720p frame) and the embedder (ms per face) set how many cameras one
box can watch. int8 could make both faster; it is only worth having if recognition and detection stay within
0.5 points of fp32. This benchmark answers that in one run, fp32 and int8 measured side by side on the same inputs
(machines are noisy; differences measured in the same run are what carry over). A benchmark, not a test.

How the int8 models are made (ONNX Runtime's own tooling, ``onnxruntime.quantization``):

- the opset raised to 13 where lower (per-channel QDQ needs it), then ``quant_pre_process`` (shape inference + graph
  optimisation), each falling back to the graph before it if it fails;
- ``quantize_static``: QDQ format, per-channel weights, uint8 activations / int8 weights (U8S8, what ORT recommends
  for x86; ``reduce_range`` only on CPUs without VNNI), MinMax calibration on real inputs made by the project's own
  code path: the first ``--calib`` wild_dev photos (taken across identities in turn) go through
  ``stream.loaders.photo_analyzer(...).analyze``, and the exact tensors the detector and the embedder hand to their
  backend are recorded; the detector also gets the lab_dev detection images;
- ``quantize_dynamic`` (int8 weights, activations quantised at run time), reported next to it (``--no-dynamic``).

What is measured, fp32 against each int8 file, the other model staying fp32:

- embedder: TAR at FAR 1e-2 and 1e-3 on the ``--pairs`` file (LFW format), scored as ``facewatch eval verify``
  scores it (``EmbeddingCache`` + ``pair_scores`` + ``tar_at_far``; a photo without a face rejects its pairs), and
  the cosine between the fp32 and int8 embeddings of the same face;
- detector: ``stream.eval.detect.evaluate_detect`` on lab_dev/detection (detection rate, false detections), wild_dev
  photos where no face is found, TAR with the int8 detector + fp32 embedder (the embedding depends on the landmarks),
  and how far the int8 landmarks move (in % of the distance between the eyes);
- speed with ``--threads`` (2) ONNX Runtime threads, interleaved rounds (fp32, int8, ... then reversed): detector ms
  per 1280x720 frame (a lab_dev photo resized; pre/post-processing included), embedder ms per face at batch 8 (real
  crops); median, p10-p90 of the calls, and the int8/fp32 ratio (median of the per-round ratios, with its range).

Verdict per int8 file: "within 0.5 points: yes" when no metric loses more than 0.5 points (TAR at each FAR; for the
detector also detection rate, false-detection rate and wild_dev photos with a face), with a paired-bootstrap 95 %
interval of each TAR change, since with 1500 impostor pairs one pair's score can move TAR at FAR 1e-3 by points.

Run (on 2 cores with all 3000 wild_dev pairs: about 2.5 minutes for ``fast``, 4-7 for ``arcface``)::

    python tools/quantize_int8.py [--profile fast|arcface] [--pairs N] [--out DIR]

``--pairs N``: the first N same-person and N different-person pairs (default: all). The int8 files go to ``--out DIR``
(kept) or to a temp dir removed at the end; never into the repo or the model cache. Exit status 2, with one line on
stderr, when the models or the data are missing. Caveat: the calibration photos are also among the evaluated ones
(calibration only sets activation ranges, from ~100 of ~2300 photos).
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engines.analyzer import FaceAnalyzer, largest_face  # noqa: E402
from engines.backends.base import BackendUnavailable, InferenceBackend  # noqa: E402
from engines.files import ModelError  # noqa: E402
from stream.eval.photos import EvalError  # noqa: E402

SHARED_FACES = Path(os.environ.get("FACEWATCH_SHARED") or REPO.parent / "shared") / "data" / "faces"
FARS = (1e-2, 1e-3)
MAX_LOSS_POINTS = 0.5
FRAME_HW = (720, 1280)
EMBED_BATCH = 8
NO_FACE_SCORE = -2.0  # as eval verify: a pair with a faceless photo is below every cosine


def far_label(far: float) -> str:
    """``1e-3`` for 0.001."""
    return f"1e-{round(-np.log10(far))}"


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ recording the project's own network inputs
class RecordingBackend(InferenceBackend):
    """Wraps a backend and keeps a copy of every input it is given: the exact tensors the project's own
    pre-processing (``Detector.preprocess``, ``Embedder.embed``, ``arcface.preprocess``) makes."""

    def __init__(self, inner: InferenceBackend) -> None:
        self.inner = inner
        self.name = inner.name
        self.feeds: list[dict[str, np.ndarray]] = []

    @property
    def input_shapes(self) -> dict[str, tuple]:
        return self.inner.input_shapes

    @property
    def output_shapes(self) -> dict[str, tuple]:
        return self.inner.output_shapes

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.feeds.append({k: np.array(v, copy=True) for k, v in inputs.items()})
        return self.inner.run(inputs)


def calibration_photos(root: Path, n: int) -> list[Path]:
    """``n`` photos of a labelled folder, taking each identity's next photo in turn (so all identities are seen)."""
    from stream.eval.photos import list_identities

    per = list(list_identities(root).values())
    out: list[Path] = []
    k = 0
    while len(out) < n and any(k < len(ps) for ps in per):
        out += [ps[k] for ps in per if k < len(ps)]
        k += 1
    return out[:n]


@dataclass
class Calibration:
    detector_feeds: list[dict[str, np.ndarray]]
    embedder_feeds: list[dict[str, np.ndarray]]
    crops: np.ndarray  # canonical crops (largest face of each photo), for the speed test


def record_calibration(an: FaceAnalyzer, photos: list[Path], detection_images: list[Path]) -> Calibration:
    """Run the photos through ``an.analyze`` and the detection images through its detector, recording inputs."""
    from stream.media.images import load_image

    det = an.detector
    member = an.embedder.members[0]  # type: ignore[attr-defined]
    det_rec, emb_rec = RecordingBackend(det.backend), RecordingBackend(member.backend)  # type: ignore[attr-defined]
    det.backend, member.backend = det_rec, emb_rec  # type: ignore[attr-defined]
    crops = []
    try:
        for p in photos:
            faces = an.analyze(load_image(p))
            if faces:
                crops.append(largest_face(faces).crop)
        for p in detection_images:
            det.detect(load_image(p))
    finally:
        det.backend, member.backend = det_rec.inner, emb_rec.inner  # type: ignore[attr-defined]
    if not emb_rec.feeds or not crops:
        raise EvalError(f"no face found in the {len(photos)} calibration photos")
    return Calibration(det_rec.feeds, emb_rec.feeds, np.stack(crops))


# ------------------------------------------------------------------ quantisation
class CapturedWarnings(logging.Handler):
    """ORT's quantisation tooling reports what it skips through ``logging``: keep those lines for the caveats."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = " ".join(record.getMessage().split())[:200]
        if line not in self.lines:
            self.lines.append(line)


@dataclass
class Variant:
    precision: str  # "fp32", "int8 static", "int8 dynamic"
    path: Path | None
    seconds: float = 0.0
    error: str | None = None
    runtime_ops: str = ""  # what ORT's optimised session runs
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.path is not None and self.error is None

    @property
    def size_mb(self) -> float | None:
        return self.path.stat().st_size / 1e6 if self.path is not None and self.path.is_file() else None


class FeedReader:
    """``CalibrationDataReader`` over recorded feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds = feeds
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self.feeds)


def has_vnni() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True
    return "avx512_vnni" in flags or "avx_vnni" in flags or "amx_int8" in flags


def pre_process(src: Path, out_dir: Path, captured: CapturedWarnings) -> Path:
    """The graph to quantise: opset raised to 13 when lower (per-channel ``DequantizeLinear`` needs its ``axis``
    attribute, which opset 11 lacks: ORT writes it anyway and the file does not load), then ``quant_pre_process``
    (shape inference + ORT's graph optimisation, which also folds the detector's Constant-fed Conv weights into
    initializers). Symbolic shape inference needs sympy; without it ONNX's own shape inference is used, which is
    enough for these CNNs. The last graph that worked when a step fails (its reason goes to the caveats)."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = onnx.load(str(src))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    cur = src
    if opset < 13:
        try:
            cur = out_dir / f"{src.stem}.opset13.onnx"
            onnx.save(version_converter.convert_version(model, 13), str(cur))
        except Exception as exc:  # onnx raises several kinds here
            captured.lines.append(f"opset {opset} -> 13 conversion failed ({type(exc).__name__}: {str(exc)[:100]})")
            cur = src
    dst = out_dir / f"{src.stem}.pre.onnx"
    try:
        import sympy  # noqa: F401

        symbolic = True
    except ImportError:
        symbolic = False
    if not symbolic:
        captured.lines.append("sympy is not installed: quant_pre_process ran ONNX shape inference only (no symbolic)")
    try:
        quant_pre_process(str(cur), str(dst), skip_symbolic_shape=not symbolic)
        return dst
    except Exception as exc:  # ORT raises plain Exceptions of many kinds here
        captured.lines.append(f"quant_pre_process failed ({type(exc).__name__}: {' '.join(str(exc).split())[:120]}); "
                              "quantised the graph before it")
        return cur


def runtime_ops(path: Path, out_dir: Path, threads: int) -> str:
    """Op types of the graph ORT actually runs (after its QDQ fusions): which ops became int8 kernels."""
    import onnx
    import onnxruntime as ort

    opt = out_dir / (path.stem + ".ort_optimised.onnx")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED  # portable: no NCHWc layout ops
    so.optimized_model_filepath = str(opt)
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    ops = Counter(n.op_type for n in onnx.load(str(opt)).graph.node)
    opt.unlink(missing_ok=True)
    skip = {"Constant", "Shape", "Gather", "Unsqueeze", "Cast", "Identity", "Slice"}
    return " ".join(f"{k}x{v}" for k, v in ops.most_common() if k not in skip)


def quantize(src: Path, out_dir: Path, feeds: list[dict[str, np.ndarray]], threads: int,
             dynamic: bool) -> list[Variant]:
    """The int8 variants of ``src``: static QDQ (calibrated on ``feeds``) and, when ``dynamic``, dynamic."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

    import onnxruntime as ort

    class Reader(FeedReader, CalibrationDataReader):
        pass

    # calibration sessions are ORT's own: mute their C++ warnings (ArcFace declares its output as [1, 512] and
    # warns at every batch of more than one face)
    ort.set_default_logger_severity(3)

    captured = CapturedWarnings()
    root = logging.getLogger()
    root.addHandler(captured)
    old_level = root.level
    root.setLevel(logging.WARNING)
    out: list[Variant] = []
    try:
        t = time.perf_counter()
        pre = pre_process(src, out_dir, captured)
        pre_s = time.perf_counter() - t
        pre_lines = list(captured.lines)
        jobs: list[tuple[str, Callable[[Path], None]]] = [
            ("int8 static", lambda dst: quantize_static(
                str(pre), str(dst), Reader(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                reduce_range=not has_vnni(), activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8))]
        if dynamic:
            # uint8 weights: ConvInteger (what a dynamically quantised Conv becomes) with int8 weights loads too but
            # ran 2.5x slower still here (dlib, batch 8, 2 threads: 11.9 against 4.7 ms per face)
            jobs.append(("int8 dynamic", lambda dst: quantize_dynamic(
                str(pre), str(dst), per_channel=True, weight_type=QuantType.QUInt8)))
        for precision, job in jobs:
            dst = out_dir / f"{src.stem}.{precision.replace(' ', '_')}.onnx"
            captured.lines = list(pre_lines)
            t = time.perf_counter()
            v = Variant(precision, dst)
            try:
                job(dst)
                v.seconds = time.perf_counter() - t + pre_s
                v.runtime_ops = runtime_ops(dst, out_dir, threads)
            except Exception as exc:  # a failed variant is a result, not a crash
                v.error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
            v.warnings = list(captured.lines)
            out.append(v)
    finally:
        root.removeHandler(captured)
        root.setLevel(old_level)
    return out


# ------------------------------------------------------------------ building models on a given ONNX file
def ort_backend(path: Path, threads: int) -> InferenceBackend:
    """The backend ``photo_analyzer`` builds (a lone process: idle threads may spin), on another file."""
    from engines.backends.onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(path, threads=threads, spin=True)


def detector_on(path: Path, cfg: Any, threads: int):
    from engines.detector import Detector
    from stream.loaders import detector_params

    p = detector_params(cfg)
    return Detector(ort_backend(path, threads), score_threshold=p.score_threshold, nms_threshold=p.nms_threshold,
                    max_side=p.max_side)


def embedder_on(path: Path, cfg: Any, threads: int):
    """The profile's (one-member) embedder with its member on ``path``: same class, chip cutting and model id."""
    from engines.factory import embedder_class
    from engines.fusion import FusedEmbedder
    from engines.profiles import profile

    prof = profile(cfg.recognition.profile)
    cls, _ = embedder_class(prof.members[0].model)
    member = cls(ort_backend(path, threads), max_batch=cfg.embed_batch.max_batch)  # type: ignore[call-arg]
    return FusedEmbedder([member], prof.weights, prof.id)


# ------------------------------------------------------------------ accuracy
class TracingAnalyzer(FaceAnalyzer):
    """A ``FaceAnalyzer`` that remembers the landmarks of the largest face of its last photo."""

    last: np.ndarray | None = None

    def analyze(self, image: np.ndarray, *, pad_retry: bool = True):  # type: ignore[override]
        faces = super().analyze(image, pad_retry=pad_retry)
        self.last = largest_face(faces).landmarks if faces else None
        return faces


@dataclass
class Recognition:
    scores: np.ndarray  # per pair; a pair with a faceless photo at NO_FACE_SCORE
    same: np.ndarray
    tar: list[float | None]  # per FAR, in %
    photos: int
    no_face: int
    embeddings: dict[Path, np.ndarray | None]
    landmarks: dict[Path, np.ndarray | None]
    seconds: float


def recognition(det, emb, pairs: list, root: Path) -> Recognition:
    """TAR at ``FARS`` as ``eval verify`` computes it (``stream.eval.verify.evaluate_verify``, without its plots)."""
    from stream.eval.photos import EmbeddingCache, pair_scores
    from stream.eval.rates import tar_at_far

    an = TracingAnalyzer(det, emb)
    landmarks: dict[Path, np.ndarray | None] = {}

    class Cache(EmbeddingCache):
        def get(self, path: Path) -> np.ndarray | None:
            if path not in self.cache:
                an.last = None
                super().get(path)
                landmarks[path] = an.last
            return self.cache[path]

    cache = Cache(an, root)
    t = time.perf_counter()
    scores = pair_scores(cache, pairs, progress=False)
    same = np.array([p.same for p in pairs])
    finite = np.where(np.isfinite(scores), scores, NO_FACE_SCORE)
    gen, imp = finite[same], finite[~same]
    tars = [tar_at_far(gen, imp, f).rate for f in FARS]
    return Recognition(finite, same, [None if r is None else 100 * r for r in tars], len(cache.cache),
                       len(cache.failures), dict(cache.cache), landmarks, time.perf_counter() - t)


def tar_change_interval(ref: Recognition, new: Recognition, far: float, draws: int = 1000,
                        seed: int = 0) -> tuple[float, float] | None:
    """95 % paired-bootstrap interval of TAR(new) - TAR(ref) in points: the same resampled genuine and impostor
    pairs for both, so what it shows is how far the pairs at hand can move the difference (at FAR 1e-3 on 1500
    impostor pairs the threshold sits on the 2nd-highest impostor score, so one pair's score moves TAR a lot)."""
    from stream.eval.rates import tar_at_far

    rng = np.random.default_rng(seed)
    g0, i0 = ref.scores[ref.same], ref.scores[~ref.same]
    g1, i1 = new.scores[new.same], new.scores[~new.same]
    out = []
    for _ in range(draws):
        gi, ii = rng.integers(0, len(g0), len(g0)), rng.integers(0, len(i0), len(i0))
        a, b = tar_at_far(g0[gi], i0[ii], far).rate, tar_at_far(g1[gi], i1[ii], far).rate
        if a is None or b is None:
            return None
        out.append(100 * (b - a))
    return float(np.percentile(out, 2.5)), float(np.percentile(out, 97.5))


def cosines(a: Recognition, b: Recognition) -> np.ndarray:
    """Cosine of the two embeddings of each photo where both found a face."""
    return np.array([float(a.embeddings[p] @ b.embeddings[p]) for p in a.embeddings
                     if a.embeddings[p] is not None and b.embeddings.get(p) is not None])


def landmark_shift(a: Recognition, b: Recognition) -> np.ndarray:
    """Mean distance of the 5 landmarks between two runs, in % of the fp32 eye distance, per photo."""
    out = []
    for p, la in a.landmarks.items():
        lb = b.landmarks.get(p)
        if la is not None and lb is not None:
            iod = max(float(np.linalg.norm(la[1] - la[0])), 1e-6)
            out.append(100 * float(np.mean(np.linalg.norm(la - lb, axis=1))) / iod)
    return np.array(out)


def detection(det, detection_dir: Path) -> dict[str, Any]:
    from stream.eval.detect import evaluate_detect

    rep = evaluate_detect(det, detection_dir / "images", detection_dir / "ground_truth.json")
    found = sum(r["found"] for r in rep["per_image"])
    false = sum(r["false"] for r in rep["per_image"])
    return {"faces": rep["faces"], "found": found, "false": false, "images": rep["images"],
            "rate": 100 * rep["detection_rate"], "false_rate": 100 * rep["false_detection_rate"],
            "per_image": {r["image"]: (r["found"], r["false"]) for r in rep["per_image"]}}


# ------------------------------------------------------------------ speed
@dataclass
class Timing:
    calls: list[float]  # ms per unit (frame or face), every timed call
    rounds: list[float]  # median per round

    @property
    def median(self) -> float:
        return statistics.median(self.calls)

    def spread(self) -> tuple[float, float]:
        return float(np.percentile(self.calls, 10)), float(np.percentile(self.calls, 90))


def interleaved(fns: list[Callable[[], object]], rounds: int, calls: int, per: int = 1,
                warmup: int = 3) -> list[Timing]:
    """Time each function ``calls`` times per round, the functions taking turns (order reversed every other round,
    so drift and a neighbour's load hit all alike). ms per unit: each call's time divided by ``per``."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    out = [Timing([], []) for _ in fns]
    for r in range(rounds):
        order = list(range(len(fns)))[:: 1 if r % 2 == 0 else -1]
        for i in order:
            ts = []
            for _ in range(calls):
                t = time.perf_counter()
                fns[i]()
                ts.append(1000 * (time.perf_counter() - t) / per)
            out[i].calls += ts
            out[i].rounds.append(statistics.median(ts))
    return out


def ratio(t: Timing, ref: Timing) -> tuple[float, float, float]:
    """int8/fp32: median of the per-round ratios, and their min and max."""
    r = [a / b for a, b in zip(t.rounds, ref.rounds)]
    return statistics.median(r), min(r), max(r)


# ------------------------------------------------------------------ the run
@dataclass
class Row:
    model: str
    variant: Variant
    tar: list[float | None] = field(default_factory=list)
    no_face: str = ""
    detection: str = ""
    agreement: str = ""
    timing: Timing | None = None
    ratio: tuple[float, float, float] | None = None
    verdict: str = ""
    det: dict[str, Any] | None = None  # detector rows: lab_dev detection
    rec: Recognition | None = None


def check_inputs(args: argparse.Namespace) -> list:
    from stream.eval.photos import EmbeddingCache, parse_pairs, require_photos

    if not args.pairs_file.is_file():
        raise EvalError(f"--pairs-file {args.pairs_file}: no such file (the shared dev data: ../shared/data/faces)")
    if not args.root.is_dir():
        raise EvalError(f"--root {args.root}: no such directory")
    for part in ("images", "ground_truth.json"):
        if not (args.detection / part).exists():
            raise EvalError(f"--detection {args.detection}: has no {part}")
    pairs = parse_pairs(args.pairs_file)
    if args.pairs is not None:
        pairs = [p for p in pairs if p.same][: args.pairs] + [p for p in pairs if not p.same][: args.pairs]
    require_photos(EmbeddingCache(None, args.root), pairs)
    return pairs


def check_models(cfg: Any) -> Any:
    """The model store, when the detector's and the profile's files are in it (no conversion or download here)."""
    from engines.model_store import DETECTOR_FILE, ModelStore

    store = ModelStore(cfg.home)
    prof = cfg.recognition.profile
    for name in (DETECTOR_FILE, *ModelStore.PROFILE_FILES[prof]):
        if not (store.dir / name).is_file():
            extra = " --profile arcface --accept-model-license" if prof == "arcface" else ""
            raise ModelError(f"model {name} is not in {store.dir}: run 'facewatch models prepare{extra}' first")
    return store


def out_dir(args: argparse.Namespace, store: Any) -> tuple[Path, bool]:
    """Where the int8 files go, and whether to remove it at the end; refuses the repo and the model cache."""
    if args.out is None:
        return Path(tempfile.mkdtemp(prefix="facewatch-int8-")), True
    out = args.out.expanduser().resolve()
    for forbidden, what in ((REPO, "the repository"), (Path(store.dir).resolve(), "the model cache")):
        if out == forbidden or forbidden in out.parents:
            raise EvalError(f"--out {args.out}: inside {what} ({forbidden}); give a directory outside it")
    out.mkdir(parents=True, exist_ok=True)
    return out, False


def fmt_pct(v: float | None, ref: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:.2f}" if ref is None or v is ref else f"{v:.2f} ({v - ref:+.2f})"


def run(args: argparse.Namespace) -> str:
    from stream.config import load_config
    from stream.loaders import photo_analyzer

    pairs = check_inputs(args)
    cfg = load_config(overrides={"engines": {"engine": "onnxruntime", "threads": args.threads},
                                 "recognition": {"profile": args.profile}})
    store = check_models(cfg)
    an = photo_analyzer(cfg)
    det_src = Path(an.detector.backend.path)  # type: ignore[attr-defined]
    emb_src = Path(an.embedder.members[0].backend.path)  # type: ignore[attr-defined]
    emb_name = an.embedder.members[0].name  # type: ignore[attr-defined]
    out, remove = out_dir(args, store)
    try:
        return measure(args, cfg, an, pairs, det_src, emb_src, emb_name, out)
    finally:
        if remove:
            shutil.rmtree(out, ignore_errors=True)


def measure(args: argparse.Namespace, cfg: Any, an: FaceAnalyzer, pairs: list, det_src: Path, emb_src: Path,
            emb_name: str, out: Path) -> str:
    import cv2

    from stream.media.images import load_image

    t0 = time.perf_counter()
    det_images = sorted((args.detection / "images").iterdir())
    photos = calibration_photos(args.root, args.calib)
    log(f"calibration: {len(photos)} wild_dev photos + {len(det_images)} detection images through photo_analyzer")
    calib = record_calibration(an, photos, det_images)
    log(f"recorded {len(calib.detector_feeds)} detector and {len(calib.embedder_feeds)} embedder inputs "
        f"({sum(len(f[next(iter(f))]) for f in calib.embedder_feeds)} faces)")

    variants: dict[str, list[Variant]] = {}
    for kind, src, feeds in (("detector", det_src, calib.detector_feeds), ("embedder", emb_src, calib.embedder_feeds)):
        log(f"quantising {src.name} into {out}")
        variants[kind] = [Variant("fp32", src)] + quantize(src, out, feeds, args.threads, not args.no_dynamic)
        for v in variants[kind][1:]:
            log(f"  {v.precision}: " + (f"FAILED {v.error}" if v.error else f"{v.size_mb:.1f} MB in {v.seconds:.0f} s"))

    # models on each file (the other model fp32)
    dets = [an.detector] + [detector_on(v.path, cfg, args.threads) if v.ok else None for v in variants["detector"][1:]]
    embs = [an.embedder] + [embedder_on(v.path, cfg, args.threads) if v.ok else None for v in variants["embedder"][1:]]

    log(f"recognition: {len(pairs)} pairs, fp32")
    ref = recognition(an.detector, an.embedder, pairs, args.root)
    log(f"  {ref.photos} photos in {ref.seconds:.0f} s")
    rows: list[Row] = []
    for v, emb in zip(variants["embedder"], embs):
        row = Row(f"embedder {emb_name}", v)
        if emb is not None:
            rec = ref if emb is an.embedder else recognition(an.detector, emb, pairs, args.root)
            if rec is not ref:
                log(f"  embedder {v.precision}: {rec.seconds:.0f} s")
                c = cosines(ref, rec)
                row.agreement = f"cos {np.mean(c):.4f} mean, {np.min(c):.4f} min"
            row.tar, row.no_face, row.rec = rec.tar, f"{rec.no_face}/{rec.photos}", rec
        rows.append(row)
    det_ref = detection(an.detector, args.detection)
    for v, det in zip(variants["detector"], dets):
        row = Row("detector retinaface", v)
        if det is not None:
            d = det_ref if det is an.detector else detection(det, args.detection)
            rec = ref if det is an.detector else recognition(det, an.embedder, pairs, args.root)
            if rec is not ref:
                log(f"  detector {v.precision}: {rec.seconds:.0f} s")
                s = landmark_shift(ref, rec)
                row.agreement = f"landmarks {np.median(s):.2f} % / {np.percentile(s, 95):.2f} % IOD (median/p95)"
            row.tar, row.no_face = rec.tar, f"{rec.no_face}/{rec.photos}"
            row.detection = f"{d['found']}/{d['faces']} ({d['rate']:.1f} %), {d['false']} false"
            changed = [name for name, fd in d["per_image"].items() if fd != det_ref["per_image"].get(name)]
            if changed:
                row.detection += f" (differs in {', '.join(changed)})"
            row.det, row.rec = d, rec
        rows.append(row)

    log(f"speed: {args.threads} threads, {args.rounds} interleaved rounds of {args.calls} calls")
    frame = cv2.resize(load_image(det_images[0]), FRAME_HW[::-1], interpolation=cv2.INTER_LINEAR)
    crops = np.ascontiguousarray(np.resize(calib.crops, (EMBED_BATCH, *calib.crops.shape[1:])))
    emb_rows = [r for r in rows if r.model.startswith("embedder")]
    det_rows = [r for r in rows if r.model.startswith("detector")]
    live_e = [(r, e) for r, e in zip(emb_rows, embs) if e is not None]
    live_d = [(r, d) for r, d in zip(det_rows, dets) if d is not None]
    for live, fns, per in ((live_d, [lambda d=d: d.detect(frame) for _, d in live_d], 1),
                           (live_e, [lambda e=e: e.embed_crops(crops) for _, e in live_e], EMBED_BATCH)):
        timings = interleaved(fns, args.rounds, args.calls, per)
        for (r, _), tm in zip(live, timings):
            r.timing, r.ratio = tm, ratio(tm, timings[0])

    # verdicts: an int8 variant passes when no metric loses more than 0.5 points against fp32
    for group in (emb_rows, det_rows):
        base = group[0]
        for r in group[1:]:
            if not r.variant.ok:
                r.verdict = f"not measured ({r.variant.error})"
                continue
            losses = {f"TAR@FAR{far_label(f)}": (b - a) for f, a, b in zip(FARS, r.tar, base.tar)
                      if a is not None and b is not None}
            if r.det is not None and base.det is not None and r.rec is not None and base.rec is not None:
                d, d0, rec, rec0 = r.det, base.det, r.rec, base.rec
                losses["detection rate"] = d0["rate"] - d["rate"]
                losses["false-detection rate"] = d["false_rate"] - d0["false_rate"]
                losses["photos with a face"] = 100 * (rec.no_face / rec.photos - rec0.no_face / rec0.photos)
            worst = max(losses, key=lambda k: losses[k])
            ok = losses[worst] <= MAX_LOSS_POINTS
            speed = f"; {r.ratio[0]:.2f}x the fp32 time" if r.ratio else ""
            cis = []
            if r.rec is not None and base.rec is not None:
                for f in FARS:
                    ci = tar_change_interval(base.rec, r.rec, f)
                    if ci is not None:
                        cis.append(f"TAR@FAR{far_label(f)} [{ci[0]:+.2f}, {ci[1]:+.2f}]")
            ci_text = f"; paired-bootstrap 95 % interval of the change: {', '.join(cis)}" if cis else ""
            r.verdict = (f"within {MAX_LOSS_POINTS} points: {'yes' if ok else 'no'} (worst: {worst} "
                         f"{0.0 - losses[worst]:+.2f} points{ci_text}{speed})")
    return report(args, cfg, rows, calib, len(pairs), time.perf_counter() - t0)


def report(args: argparse.Namespace, cfg: Any, rows: list[Row], calib: Calibration, n_pairs: int,
           seconds: float) -> str:
    import onnxruntime as ort

    lines = [f"## int8 vs fp32: profile {args.profile}, ONNX Runtime {ort.__version__}, {args.threads} threads, "
             f"{os.cpu_count()} cores, VNNI {'yes' if has_vnni() else 'no'}", "",
             f"TAR on {n_pairs} pairs of {args.pairs_file} (points; in brackets: minus fp32); detection on "
             f"{args.detection.name}/ (IoU >= 0.5, score >= {cfg.detector.score_threshold}); ms: median "
             f"[p10-p90] of {args.rounds}x{args.calls} interleaved calls; ratio: median [min-max] of per-round "
             "int8/fp32.", "",
             "| model | precision | MB | TAR@FAR1e-2 | TAR@FAR1e-3 | no face | lab_dev detection | vs fp32 | ms | "
             "int8/fp32 |", "|" + "---|" * 10]
    base: dict[str, Row] = {}
    for r in rows:
        b = base.setdefault(r.model, r)
        unit = "frame 720p" if r.model.startswith("detector") else f"face (batch {EMBED_BATCH})"
        if not r.variant.ok:
            lines.append(f"| {r.model} | {r.variant.precision} | | failed: {r.variant.error} | | | | | | |")
            continue
        ms = (f"{r.timing.median:.1f} [{r.timing.spread()[0]:.1f}-{r.timing.spread()[1]:.1f}] per {unit}"
              if r.timing else "")
        rat = f"{r.ratio[0]:.2f} [{r.ratio[1]:.2f}-{r.ratio[2]:.2f}]" if r.ratio and r is not b else ""
        tars = [fmt_pct(v, None if r is b else bv) for v, bv in zip(r.tar, b.tar)]
        lines.append(f"| {r.model} | {r.variant.precision} | {r.variant.size_mb:.1f} | {tars[0]} | {tars[1]} | "
                     f"{r.no_face} | {r.detection or '-'} | {r.agreement or '-'} | {ms} | {rat} |")
    lines += ["", "Detector rows: TAR with that detector and the fp32 embedder. No face: wild_dev photos without a "
              "detected face (their pairs count as rejections).", ""]
    for r in rows:
        if r.verdict:
            lines.append(f"- **{r.model} {r.variant.precision}**: {r.verdict}")
    lines += ["", "What ORT runs (op types of its optimised session graph):"]
    for r in rows:
        if r.variant.precision != "fp32" and r.variant.ok:
            lines.append(f"- {r.model} {r.variant.precision} (quantised in {r.variant.seconds:.0f} s): "
                         f"{r.variant.runtime_ops}")
            for w in r.variant.warnings[:4]:
                lines.append(f"  - ORT: {w}")
    lines += ["", f"Calibration: {len(calib.detector_feeds)} detector inputs, {len(calib.embedder_feeds)} embedder "
              f"batches ({args.calib} wild_dev photos, also among the evaluated ones). Wall time {seconds:.0f} s."]
    return "\n".join(lines)


def parse_args(argv: Iterable[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--profile", choices=("fast", "arcface"), default="fast", help="recognition profile (embedder)")
    ap.add_argument("--pairs", type=int, default=None, metavar="N",
                    help="the first N same-person and N different-person pairs (default: all)")
    ap.add_argument("--out", type=Path, default=None, metavar="DIR",
                    help="keep the int8 files here (default: a temp dir, removed at the end)")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads per model (default 2)")
    ap.add_argument("--calib", type=int, default=100, help="wild_dev photos for calibration (default 100)")
    ap.add_argument("--rounds", type=int, default=30, help="interleaved speed rounds (default 30)")
    ap.add_argument("--calls", type=int, default=5, help="timed calls per model per round (default 5)")
    ap.add_argument("--no-dynamic", action="store_true", help="skip quantize_dynamic")
    ap.add_argument("--pairs-file", type=Path, default=SHARED_FACES / "wild_dev" / "pairs.txt")
    ap.add_argument("--root", type=Path, default=SHARED_FACES / "wild_dev" / "ids", help="photos of --pairs-file")
    ap.add_argument("--detection", type=Path, default=SHARED_FACES / "lab_dev" / "detection",
                    help="images/ + ground_truth.json")
    args = ap.parse_args(list(argv) if argv is not None else None)
    for name in ("pairs", "threads", "calib", "rounds", "calls"):
        v = getattr(args, name)
        if v is not None and v < 1:
            ap.error(f"--{name} must be at least 1")
    return args


def main(argv: Iterable[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        print(run(args))
    except (EvalError, ModelError, BackendUnavailable) as exc:
        print(f"quantize_int8: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
