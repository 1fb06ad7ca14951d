"""The face-model seam: canonical crops, embedders cutting their own chips, fusion, the track rule, and the gallery
recording (and refusing) the embedder of its vectors, keeping crops, re-embedding and migrating."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from engines.aggregate import templates, track_vector
from engines.embedder import TEMPLATE, Embedder
from engines.face_model import (CROP_SIZE, CROP_TEMPLATE, FaceEmbedder, check_crops, crop_clipped, crop_sharpness,
                                exposure_problem, face_crop)
from engines.fusion import FusedEmbedder
from engines.profiles import PROFILES, profile
from stream.pipeline.decisions import TrackTemplate
from stream.store.gallery import LEGACY_EMBEDDER, Gallery, GalleryError


def unit(rng: np.random.Generator, n: int, d: int = 128) -> np.ndarray:
    v = rng.normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# ------------------------------------------------------------------ crops and chips
def test_crop_puts_landmarks_on_the_template_and_chips_match_direct_alignment(astronaut_bgr, analyzer):
    face = analyzer.detector.detect(astronaut_bgr)
    lm = face.landmarks[0]
    crop = face_crop(astronaut_bgr, lm)
    assert crop.shape == (CROP_SIZE, CROP_SIZE, 3) and crop.dtype == np.uint8
    dlib = analyzer.embedder.members[0]
    via_crop = dlib.chips(crop[None])[0]
    direct = Embedder.align(astronaut_bgr, lm)
    # cutting dlib's chip from the crop is the same face as cutting it from the frame (two interpolations)
    e = dlib.embed(np.stack([via_crop, direct]))
    assert float(e[0] @ e[1]) > 0.99
    assert np.abs(via_crop.astype(int) - direct.astype(int)).mean() < 12


def test_every_embedder_template_fits_inside_the_crop():
    from engines.align import umeyama_similarity

    arcface160 = CROP_TEMPLATE  # the crop template is ArcFace's, moved and scaled
    for template, size in ((TEMPLATE, 150), ((arcface160 - arcface160.mean(0)) / 60 * 50.3 + [80, 87.7], 160)):
        inv = umeyama_similarity(template, CROP_TEMPLATE)  # chip -> crop
        corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], float)
        mapped = corners @ inv[:, :2].T + inv[:, 2]
        assert mapped.min() >= -1 and mapped.max() <= CROP_SIZE + 1, mapped


def test_bad_crops_are_refused_with_the_shape():
    with pytest.raises(ValueError, match=r"\[N, 256, 256, 3\] uint8"):
        check_crops(np.zeros((2, 150, 150, 3), np.uint8))
    with pytest.raises(ValueError, match="float32"):
        check_crops(np.zeros((1, 256, 256, 3), np.float32))


def test_sharpness_falls_with_blur(astronaut_bgr, analyzer):
    import cv2

    crop = face_crop(astronaut_bgr, analyzer.detector.detect(astronaut_bgr).landmarks[0])
    assert crop_sharpness(cv2.GaussianBlur(crop, (0, 0), 3)) < 0.3 * crop_sharpness(crop)


def _shaded(img: np.ndarray, factor: float, left_of: int | None = None) -> np.ndarray:
    """``img`` darkened by ``factor`` (only its columns left of ``left_of`` when given): a face in shadow."""
    out = img.astype(np.float32).copy()
    out[:, :left_of] *= factor
    return np.clip(out, 0, 255).astype(np.uint8)


def test_exposure_gate_drops_faces_lost_to_shadow_or_glare_and_keeps_dim_ones(astronaut_bgr, analyzer):
    face = analyzer.detector.detect(astronaut_bgr)
    crop = face_crop(astronaut_bgr, face.landmarks[0])
    assert crop_clipped(crop) < 0.05 and exposure_problem(crop, 0.2) is None
    dim = face_crop(_shaded(astronaut_bgr, 0.5), face.landmarks[0])  # half the light: still every detail
    assert exposure_problem(dim, 0.2) is None
    cx = int(face.landmarks[0][2, 0])  # the nose: half the face in deep shadow, as Extended Yale B's side light
    half = face_crop(_shaded(astronaut_bgr, 0.05, cx), face.landmarks[0])
    assert 0.3 < crop_clipped(half) < 0.7
    why = exposure_problem(half, 0.2)
    assert why is not None and "near black or white" in why and "lower face" in why and "quality.max_clipped 0.2" in why
    glare = face_crop(np.clip(astronaut_bgr.astype(np.int32) * 4, 0, 255).astype(np.uint8), face.landmarks[0])
    assert exposure_problem(glare, 0.2) is not None
    assert exposure_problem(half, 1.0) is None  # 1.0 turns the gate off


# ------------------------------------------------------------------ fusion
class _Fixed(FaceEmbedder):
    """A deterministic embedder for fusion algebra: the vector is a function of the crop's mean colour."""

    chip_size = 8
    template = TEMPLATE / 150 * 8

    def __init__(self, name: str, seed: int) -> None:
        self.name, self.dim = name, 16  # type: ignore[misc]
        self.proj = np.random.default_rng(seed).normal(size=(3, 16)).astype(np.float32)

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        v = chips.reshape(len(chips), -1, 3).mean(1) @ self.proj
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_fused_cosine_is_the_weighted_sum_of_member_cosines():
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (5, CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    a, b = _Fixed("a", 1), _Fixed("b", 2)
    fused = FusedEmbedder([a, b], [0.3, 0.7], "accurate:test")
    f = fused.embed_crops(crops)
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-5)
    ea, eb = a.embed_crops(crops), b.embed_crops(crops)
    np.testing.assert_allclose(f @ f.T, 0.3 * ea @ ea.T + 0.7 * eb @ eb.T, atol=1e-5)
    assert fused.model_id == "accurate:test" and fused.dim == 32
    with pytest.raises(ValueError):
        FusedEmbedder([a, b], [0.5, 0.6], "x")


def test_profile_ids_carry_weights_and_weights_follow_impostor_spread():
    acc = profile("accurate")
    assert abs(sum(acc.weights) - 1) < 1e-9 and acc.dim == 256
    # the member whose impostor scores spread less gets more weight (z-normalisation)
    stds = [m.impostor_std for m in acc.members]
    assert acc.weights[int(np.argmin(stds))] == max(acc.weights)
    assert profile("fast").id == "fast:dlib_resnet_v1" and "@" in acc.id
    with pytest.raises(ValueError, match="unknown recognition profile"):
        profile("turbo")
    assert set(PROFILES) == {"fast", "accurate", "arcface"}


# ------------------------------------------------------------------ the track rule
def test_track_vector_is_a_quality_weighted_unit_mean():
    e = np.array([[1, 0], [0, 1]], np.float32)
    np.testing.assert_allclose(track_vector(e), [2 ** -0.5, 2 ** -0.5], atol=1e-6)
    v = track_vector(e, np.array([3.0, 1.0]))
    assert v[0] > v[1] and abs(np.linalg.norm(v) - 1) < 1e-6
    v0 = track_vector(e, np.array([1.0, 0.0]))  # a zero-quality look still counts a little (5 % floor)
    assert 0 < v0[1] < 0.1
    with pytest.raises(ValueError):
        track_vector(np.zeros((0, 2)))
    with pytest.raises(ValueError):
        track_vector(e, np.array([1.0, np.nan]))


def test_templates_average_each_owner():
    ids, t = templates(np.array([[1, 0], [0, 1], [1, 0]], np.float32), np.array(["b", "b", "a"]))
    assert list(ids) == ["a", "b"]
    np.testing.assert_allclose(t, [[1, 0], [2 ** -0.5, 2 ** -0.5]], atol=1e-6)


def test_track_template_decides_once_per_identity_and_unknown_only_before_any_accept():
    tr = TrackTemplate(needed=2, limit=3, start=0.0)
    assert tr.add(np.ones(2), 0.5) and not tr.ready
    assert tr.add(np.ones(2), 0.6) and tr.ready
    assert tr.observe(None, 0.9) == ("unknown", None, 0.9)
    assert tr.observe(None, 0.91) is None  # unknown once
    assert tr.observe("ann", 0.97) == ("watchlist", "ann", 0.97)
    assert tr.observe("ann", 0.98) is None and tr.current == "ann"
    assert tr.observe("bob", 0.975) == ("watchlist", "bob", 0.975)


def test_track_template_keeps_its_best_looks_when_full():
    tr = TrackTemplate(needed=1, limit=2, start=0.0)
    tr.add(np.array([1.0, 0.0]), 0.2)
    tr.add(np.array([0.0, 1.0]), 0.9)
    assert not tr.add(np.array([1.0, 1.0]), 0.1)  # worse than every kept look
    assert tr.add(np.array([-1.0, 0.0]), 0.5)  # replaces the 0.2 one
    assert sorted(tr.quality) == [0.5, 0.9]
    t2 = TrackTemplate(needed=3, limit=5, start=0.0)
    t2.add(np.ones(2), 1.0)
    assert t2.observe(None, 0.5) is None  # not enough looks to call anyone unknown


# ------------------------------------------------------------------ the gallery and its embedder
def test_gallery_records_its_embedder_and_refuses_another(tmp_path):
    rng = np.random.default_rng(1)
    d = tmp_path / "g"
    with Gallery(d, embedder="fast:dlib_resnet_v1", dim=128) as g:
        g.enroll("ann", unit(rng, 2))
    with pytest.raises(GalleryError, match=r"holds vectors of 'fast:dlib_resnet_v1'.*gallery reembed"):
        Gallery(d, readonly=True, embedder=profile("accurate").id, dim=256)
    with Gallery(d, readonly=True) as r:  # no expectation: opens, and says what it holds
        assert r.embedder == "fast:dlib_resnet_v1"
    db = sqlite3.connect(d / "gallery.sqlite")
    assert {r[0] for r in db.execute("SELECT embedder FROM samples")} == {"fast:dlib_resnet_v1"}


def test_reembed_moves_every_vector_using_kept_crops(tmp_path, analyzer, astronaut_bgr):
    face = analyzer.analyze(astronaut_bgr)[0]
    d = tmp_path / "g"
    with Gallery(d, embedder="fast:dlib_resnet_v1", dim=128) as g:
        g.enroll("astronaut", face.embedding[None], crops=[face.crop])
        noise = np.random.default_rng(2).integers(0, 255, face.crop.shape, dtype=np.uint8)
        g.add_negative("astronaut", unit(np.random.default_rng(2), 1), crop=noise)
        g.add_negative("astronaut", unit(np.random.default_rng(3), 1))  # no crop: dropped by reembed
        before = g.search(face.embedding[None])[0]
    assert (d / "gallery.sqlite").stat().st_mode & 0o077 == 0
    fused = FusedEmbedder([analyzer.embedder.members[0], analyzer.embedder.members[0]], [0.5, 0.5], "test:twice")
    with Gallery(d) as g:
        receipt = g.reembed(fused.embed_crops, "test:twice", 256)
        assert receipt == {"samples": 1, "negatives": 1, "dropped_samples": 0, "dropped_negatives": 1,
                           "persons_removed": 0}
        assert g.dim == 256 and g.embedder == "test:twice"
    with Gallery(d, readonly=True, embedder="test:twice", dim=256) as r:
        probe = fused.embed_crops(face.crop[None])
        c = r.search(probe)[0]
        # the kept JPEG crop reproduces the vector: same person, same score as before the move
        assert c.identity == "astronaut" and c.score > 0.99 and before.score > 0.99
        assert r.search_templates(probe)[0].identity == "astronaut"


def test_reembed_refuses_samples_without_crops_unless_told(tmp_path):
    rng = np.random.default_rng(4)
    d = tmp_path / "g"
    with Gallery(d) as g:
        g.enroll("old", unit(rng, 2))
        with pytest.raises(GalleryError, match="2 of 2 samples have no kept face crop"):
            g.reembed(lambda c: np.zeros((len(c), 128), np.float32), "x", 128)
        assert g.embedder == LEGACY_EMBEDDER and len(g) == 2  # nothing changed
        receipt = g.reembed(lambda c: np.zeros((len(c), 128), np.float32), "x", 128, drop_uncropped=True)
        assert receipt["dropped_samples"] == 2 and receipt["persons_removed"] == 1 and g.persons() == []


def test_an_old_gallery_migrates_and_keeps_its_rows(tmp_path):
    """A gallery from before embedder records: no meta embedder, no crop columns."""
    rng = np.random.default_rng(5)
    d = tmp_path / "g"
    d.mkdir(mode=0o700)
    db = sqlite3.connect(d / "gallery.sqlite")
    db.executescript("""CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE persons (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, created REAL NOT NULL);
CREATE TABLE samples (id INTEGER PRIMARY KEY AUTOINCREMENT, person_id INTEGER NOT NULL, embedding BLOB NOT NULL,
 source TEXT, created REAL NOT NULL);
INSERT INTO meta VALUES ('dim', '128'), ('generation', '1');
INSERT INTO persons VALUES (1, 'ann', 0);""")
    v = unit(rng, 1)
    db.execute("INSERT INTO samples (person_id, embedding, source, created) VALUES (1, ?, 'x', 0)", (v[0].tobytes(),))
    db.commit()
    db.close()
    with Gallery(d, readonly=True, embedder=LEGACY_EMBEDDER, dim=128) as r:  # a reader just reads
        assert r.search(v)[0].identity == "ann"
    with Gallery(d, embedder=LEGACY_EMBEDDER, dim=128) as w:  # the first writer migrates
        w.enroll("bob", unit(rng, 1), crops=[np.zeros((CROP_SIZE, CROP_SIZE, 3), np.uint8)])
        samples, _ = w.kept_crops()
        assert [b is None for _, b in samples] == [True, False]
        assert w.search(v)[0].identity == "ann"


def test_crop_gate_names_the_first_check_a_crop_fails(astronaut_bgr, analyzer):
    import cv2

    from stream.pipeline.decisions import crop_gate

    face = analyzer.detector.detect(astronaut_bgr)
    crop = face_crop(astronaut_bgr, face.landmarks[0])
    why, sharp = crop_gate(crop, 15.0, 0.2)
    assert why is None and sharp == crop_sharpness(crop)
    half = face_crop(_shaded(astronaut_bgr, 0.05, int(face.landmarks[0][2, 0])), face.landmarks[0])
    assert crop_gate(half, 15.0, 0.2)[0] == "exposure"
    assert crop_gate(cv2.GaussianBlur(half, (0, 0), 6), 15.0, 0.2)[0] == "blurred"  # blur is checked first
