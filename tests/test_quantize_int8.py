"""tools/quantize_int8.py: static int8 quantisation of the real models on a few real faces (a few seconds).

Uses the test run's own model cache (the ``analyzer`` fixture prepares it, as in CI); skips when ../shared is
missing.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

import quantize_int8 as q8  # noqa: E402

from engines.model_store import DETECTOR_FILE, EMBEDDER_FILE, facewatch_home  # noqa: E402

@pytest.fixture(scope="module")
def models(analyzer) -> dict[str, Path]:
    home = facewatch_home() / "models"  # the test run's cache, where ``analyzer`` put the converted models
    paths = {"detector": home / DETECTOR_FILE, "embedder": home / EMBEDDER_FILE}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        pytest.skip(f"model files not prepared: {', '.join(missing)} (facewatch models prepare)")
    return paths


@pytest.fixture(scope="module")
def calib(models: dict[str, Path], shared: Path) -> tuple[q8.FaceAnalyzer, q8.Calibration, list[Path]]:
    from engines.embedder import Embedder
    from engines.fusion import FusedEmbedder
    from stream.config import load_config

    cfg = load_config()
    an = q8.FaceAnalyzer(q8.detector_on(models["detector"], cfg, 2),
                         FusedEmbedder([Embedder(q8.ort_backend(models["embedder"], 2))], (1.0,), "fast:dlib_resnet_v1"))
    photos = q8.calibration_photos(shared / "data" / "faces" / "wild_dev" / "ids", 8)
    return an, q8.record_calibration(an, photos, []), photos


def test_static_int8_embedder_agrees_with_fp32_and_is_smaller(models: dict[str, Path],
                                                              calib: tuple, tmp_path: Path):
    an, cal, _ = calib
    assert len(cal.embedder_feeds) == 8 and cal.embedder_feeds[0]["chip"].shape[1:] == (3, 150, 150)
    (v,) = q8.quantize(models["embedder"], tmp_path, cal.embedder_feeds, 2, dynamic=False)
    assert v.ok, v.error
    assert v.size_mb is not None and v.size_mb < 0.4 * models["embedder"].stat().st_size / 1e6
    assert "QLinearConv" in v.runtime_ops  # ORT really runs int8 convolutions, not float ones between Q/DQ pairs
    from engines.embedder import Embedder

    int8 = Embedder(q8.ort_backend(v.path, 2))
    cos = np.sum(an.embedder.embed_crops(cal.crops) * int8.embed_crops(cal.crops), axis=1)
    assert cos.min() > 0.98, cos


def test_static_int8_detector_finds_the_same_faces(models: dict[str, Path], calib: tuple, tmp_path: Path):
    from engines.analyzer import largest_face
    from stream.config import load_config
    from stream.media.images import load_image

    an, cal, photos = calib
    (v,) = q8.quantize(models["detector"], tmp_path, cal.detector_feeds, 2, dynamic=False)
    assert v.ok, v.error
    assert "QLinearConv" in v.runtime_ops
    int8 = q8.FaceAnalyzer(q8.detector_on(v.path, load_config(), 2), an.embedder)
    for p in photos:
        img = load_image(p)
        ref, got = largest_face(an.analyze(img)), int8.analyze(img)
        assert got, f"int8 detector found no face in {p}"
        lm = largest_face(got).landmarks
        iod = np.linalg.norm(ref.landmarks[1] - ref.landmarks[0])
        assert np.abs(lm - ref.landmarks).max() < 0.25 * iod, p


def test_out_dir_inside_the_repo_or_model_cache_is_refused(tmp_path: Path):
    store = SimpleNamespace(dir=tmp_path / "models")
    for bad in (REPO / "int8", store.dir / "int8"):
        with pytest.raises(q8.EvalError, match="inside"):
            q8.out_dir(SimpleNamespace(out=bad), store)
    assert q8.out_dir(SimpleNamespace(out=tmp_path / "ok"), store) == ((tmp_path / "ok").resolve(), False)


def test_missing_pairs_file_is_one_line_exit_2(tmp_path: Path):
    missing = tmp_path / "nope.txt"
    res = subprocess.run([sys.executable, str(REPO / "tools" / "quantize_int8.py"), "--pairs-file", str(missing)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().count("\n") == 0 and str(missing) in res.stderr
