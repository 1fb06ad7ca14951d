"""Uploaded images: size-limited, type-checked and decoded by Pillow only (``stream.media.images.decode_upload``).

Why here and not in each route: every route that takes a photo (enroll, identify, verify, search) must refuse
the same things the same way: too large (413), not an accepted image (415), damaged (400), no face (422).
Nothing of an upload is written to disk by us and its file name is only echoed back, never used as a path.
Decoding and inference run on the thread pool, never on the event loop, so the live stream keeps flowing.
"""
from __future__ import annotations

import numpy as np
from fastapi import UploadFile
from starlette.concurrency import run_in_threadpool

from engines.analyzer import AnalyzedFace, largest_face
from stream.api.errors import ApiError
from stream.api.state import ApiState
from stream.media.images import ImageError, UnsupportedImage, decode_upload

CHUNK = 1 << 20


def client_name(f: UploadFile, fallback: str = "upload") -> str:
    """The client's file name for messages: no directories, no control characters, bounded."""
    name = (f.filename or fallback).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())[:120]
    return name or fallback


async def read_image(api: ApiState, f: UploadFile) -> tuple[str, np.ndarray]:
    """(client file name, BGR image) or ``ApiError`` 413/415/400."""
    name = client_name(f)
    limit = int(api.cfg.api.max_upload_mb * 1024 * 1024)
    data = bytearray()
    while chunk := await f.read(CHUNK):
        data += chunk
        if len(data) > limit:
            raise ApiError(413, f"{name}: larger than {api.cfg.api.max_upload_mb:g} MB (api.max_upload_mb)")
    if not data:
        raise ApiError(400, f"{name}: empty file")
    try:
        return name, await run_in_threadpool(decode_upload, bytes(data), name)
    except UnsupportedImage as exc:
        raise ApiError(415, str(exc)) from None
    except ImageError as exc:
        raise ApiError(400, str(exc)) from None


def faces_of(api: ApiState, image: np.ndarray) -> list[AnalyzedFace]:
    analyzer = api.analyzer()
    with api.analyzer_lock:
        return analyzer.analyze(image)


def main_face(api: ApiState, name: str, image: np.ndarray) -> AnalyzedFace:
    """The largest face of a photo, or 422 no_face."""
    faces = faces_of(api, image)
    if not faces:
        raise ApiError(422, f"{name}: no face found", code="no_face")
    return largest_face(faces)
