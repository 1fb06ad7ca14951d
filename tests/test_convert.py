"""The dlib -> ONNX converter reproduces dlib itself (cosine >= 0.9999), and refuses foreign files."""
from __future__ import annotations

import numpy as np
import pytest

from engines.dlib_convert import DlibFormatError, parse_dlib_resnet
from engines.embedder import Embedder
from engines.model_store import dlib_dat_path


def _chips(analyzer, images) -> np.ndarray:
    chips = []
    for img in images:
        faces = analyzer.detector.detect(img)
        chips += [Embedder.align(img, lm) for lm in faces.landmarks]
    return np.stack(chips)


def test_parity_with_dlib(analyzer, astronaut_bgr, shared_images):
    dlib = pytest.importorskip("dlib", reason="dlib-bin (test extra) provides the reference implementation")
    model = dlib.face_recognition_model_v1(str(dlib_dat_path()))
    chips = _chips(analyzer, [astronaut_bgr] + shared_images)
    assert len(chips) >= 5
    raw = analyzer.embedder.members[0].backend.run({"chip": chips.transpose(0, 3, 1, 2).astype(np.float32)})[0]
    for chip, ours in zip(chips, raw):
        ref = np.array(model.compute_face_descriptor(np.ascontiguousarray(chip)))
        cos = float(ours @ ref / np.linalg.norm(ours) / np.linalg.norm(ref))
        assert cos >= 0.9999, cos
        assert np.abs(ours - ref).max() < 1e-4


@pytest.fixture()
def shared_images(faces_root):
    """Four in-the-wild faces from the shared dev data (the ``faces_root`` fixture skips when it is absent)."""
    from stream.media.images import load_image

    ids = faces_root / "wild_dev" / "ids"
    return [load_image(ids / n / "1.jpg") for n in ("c5_madonna", "df_angelina", "bbt_penny", "friends_Matt_LeBlanc")]


def test_embeddings_are_normalised_and_discriminative(analyzer, astronaut_bgr):
    chips = _chips(analyzer, [astronaut_bgr, np.ascontiguousarray(astronaut_bgr[:, ::-1])])
    emb = analyzer.embedder.members[0].embed(chips)
    assert emb.shape == (2, 128)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert emb[0] @ emb[1] > 0.95  # a mirrored face is still the same person


def test_foreign_file_is_refused(tmp_path):
    bad = tmp_path / "x.dat"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(DlibFormatError):
        parse_dlib_resnet(bad)
