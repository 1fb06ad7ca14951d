"""Shared fixtures: the real models (converted once per session), real photos, the shared dev data."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def shared_dir() -> Path | None:
    env = os.environ.get("FACEWATCH_SHARED")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared"]:
        if (cand / "data" / "faces").is_dir():
            return cand
    return None


@pytest.fixture(scope="session")
def shared() -> Path:
    d = shared_dir()
    if d is None:
        pytest.skip("../shared/data/faces is absent (set FACEWATCH_SHARED to point at it)")
    return d


@pytest.fixture(scope="session")
def faces_root(shared: Path) -> Path:
    return shared / "data" / "faces"


@pytest.fixture(scope="session", autouse=True)
def fw_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model cache for the whole run, so the dlib conversion happens once."""
    home = Path(os.environ.get("FACEWATCH_TEST_HOME") or tmp_path_factory.mktemp("fwhome"))
    os.environ["FACEWATCH_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def analyzer(fw_home: Path):
    from stream.config import load_config
    from stream.loaders import photo_analyzer

    return photo_analyzer(load_config(overrides={"engines": {"engine": "onnxruntime", "threads": 2}, "home": str(fw_home)}))


@pytest.fixture(scope="session")
def astro_gallery(tmp_path_factory: pytest.TempPathFactory, analyzer) -> Path:
    """A gallery with the astronaut enrolled from the head the test clips are made of (never modified by tests)."""
    from stream.media.clips import astronaut_head
    from stream.store.gallery import Gallery

    d = tmp_path_factory.mktemp("gal") / "g"
    Gallery(d).enroll("astronaut", analyzer.analyze(astronaut_head())[0].embedding[None])
    return d


@pytest.fixture(scope="session")
def astronaut_bgr() -> np.ndarray:
    """A real face photo that ships with scikit-image (public domain, NASA)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])


@pytest.fixture()
def astronaut_jpg(tmp_path: Path, astronaut_bgr: np.ndarray) -> Path:
    p = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(p), astronaut_bgr)
    return p
