"""Whether a path is a file facewatch may open at all, decided from ``stat`` alone, before opening it.

Why before opening: FFmpeg (and Pillow) opening a FIFO block until a writer appears, i.e. forever; a directory
or a device is never a photo or a video. Photos (``images``), recorded videos (the capture stage) and the
preflight of camera sources all ask here, so they refuse the same things with the same words.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def regular_file_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a media file, or None for a non-empty, readable regular file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "no such file"
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        return f"cannot stat: {exc.strerror or exc}"
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        return f"is {kind}, not a regular file" if kind != "not a regular file" else kind
    if st.st_size == 0:
        return "empty file (0 bytes)"
    if not os.access(path, os.R_OK):
        return "permission denied"
    return None
