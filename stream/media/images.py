"""Read user photos into BGR uint8 arrays, refusing anything broken with a message that says why.

Pillow decodes first: it notices truncated files that OpenCV would half-decode silently, and it applies EXIF
orientation (phone photos). What Pillow does not recognise at all (Radiance HDR, PFM, ...) goes to
``cv2.imdecode`` instead. Either way the pixels are normalised the same way: 16-bit and float samples are
scaled from their full range to 8 bits (clipping a 16-bit photo to 0..255 leaves it nearly white, and the
detector finds no face), alpha is composited on white, grey and palette images become 3 channels.

Sizes the models cannot use are refused up front, naming the file: fewer than ``MIN_SIDE`` pixels on a side,
more than ``MAX_PIXELS`` in all, or an aspect ratio beyond ``MAX_ASPECT`` (a 20000x1 strip makes OpenCV's
resize assert deep inside the detector).
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from stream.media.files import regular_file_problem

# A ceiling well above any camera (10000 x 10000 fits) but below what would exhaust memory.
MAX_PIXELS = 200_000_000
# No face fits in less; and the detector's resize needs at least a pixel on each side after scaling.
MIN_SIDE = 16
# Panoramas reach about 10:1; beyond this it is a strip, not a photo.
MAX_ASPECT = 20.0

# Formats Pillow decodes completely: an OSError from these means a damaged file, never "try OpenCV", since
# OpenCV would return the half-decoded picture of a truncated file without a word.
_PILLOW_COMPLETE = {"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP"}


#: What an upload to the HTTP API may be: the formats Pillow decodes completely and browsers/cameras produce.
UPLOAD_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF")


class ImageError(ValueError):
    """A photo that cannot be used; the message names the file and the reason."""


class UnsupportedImage(ImageError):
    """An upload that is not an image of an accepted format (the HTTP API answers 415)."""


def decode_upload(data: bytes, name: str) -> np.ndarray:
    """Decode an uploaded image (bytes from a request, never a path) to BGR uint8, or raise ``ImageError``.

    Why stricter than ``load_image``: bytes from the network reach only Pillow, and only its decoders of
    ``UPLOAD_FORMATS`` (no OpenCV fallback, no exotic codec), with the same size checks before any pixel is
    decoded. ``name`` is the client's file name, used in messages only."""
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    Image.init()  # registers every plugin, so that ``formats`` below names known decoders
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[f for f in UPLOAD_FORMATS if f in Image.OPEN]) as im:
                check_size(name, *im.size)
                im.load()
                im = ImageOps.exif_transpose(im)
                rgb = _pillow_to_rgb(im)
    except UnidentifiedImageError:
        raise UnsupportedImage(f"{name}: not a JPEG, PNG, WebP, BMP or TIFF image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name}: image larger than {MAX_PIXELS} pixels") from None
    except OSError as exc:
        raise ImageError(f"{name}: unreadable or truncated image ({exc})") from None
    except (SyntaxError, ValueError) as exc:
        if isinstance(exc, ImageError):
            raise
        raise ImageError(f"{name}: malformed image ({exc})") from None
    return np.ascontiguousarray(rgb[:, :, ::-1])


def load_image(path: str | Path) -> np.ndarray:
    """Decode ``path`` to an ``HxWx3`` BGR uint8 array or raise ``ImageError``."""
    p = Path(path)
    problem = regular_file_problem(p)
    if problem:
        raise ImageError(f"{p}: {problem}")
    try:
        rgb = _decode_pillow(p)
    except _NotForPillow as why:
        rgb = _decode_opencv(p, str(why))
    except PermissionError as exc:
        raise ImageError(f"{p}: cannot read ({exc.strerror or exc})") from None
    return np.ascontiguousarray(rgb[:, :, ::-1])


class _NotForPillow(Exception):
    """Pillow cannot decode this file; OpenCV may (the message is Pillow's reason, for the final error)."""


def check_size(p: str | Path, width: int, height: int) -> None:
    """Refuse images too small, too large or too elongated for face detection (``ImageError`` naming ``p``)."""
    if width * height > MAX_PIXELS:
        raise ImageError(f"{p}: image larger than {MAX_PIXELS} pixels ({width}x{height})")
    if max(width, height) / max(min(width, height), 1) > MAX_ASPECT:
        raise ImageError(f"{p}: aspect ratio too extreme ({width}x{height}; at most {MAX_ASPECT:g}:1)")
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"{p}: image too small ({width}x{height} pixels; at least {MIN_SIDE} on each side)")


def _decode_pillow(p: Path) -> np.ndarray:
    """RGB uint8 via Pillow; ``_NotForPillow`` when the format is one Pillow does not know."""
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    fmt = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                fmt = im.format
                check_size(p, *im.size)  # from the header, before decoding a single pixel
                im.load()
                im = ImageOps.exif_transpose(im)
                return _pillow_to_rgb(im)
    except UnidentifiedImageError:
        raise _NotForPillow("not an image file (unrecognised format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{p}: image larger than {MAX_PIXELS} pixels") from None
    except PermissionError:
        raise
    except OSError as exc:
        if fmt is not None and fmt not in _PILLOW_COMPLETE and "truncat" not in str(exc).lower():
            raise _NotForPillow(f"cannot decode {fmt} image ({exc})") from None  # e.g. an exotic TIFF codec
        raise ImageError(f"{p}: unreadable or truncated image ({exc})") from None
    except (SyntaxError, ValueError) as exc:  # Pillow raises these for some malformed headers
        if isinstance(exc, ImageError):
            raise
        raise ImageError(f"{p}: malformed image ({exc})") from None


def _pillow_to_rgb(im: Image.Image) -> np.ndarray:
    """Any Pillow mode to RGB uint8: high-bit-depth scaled, alpha on white, grey/palette/CMYK expanded."""
    if im.mode.startswith("I") or im.mode == "F":  # I;16, I;16B, I;16L, I (32-bit int), F (float)
        grey = to_uint8(np.asarray(im))
        return np.repeat(grey[:, :, None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    return np.asarray(im.convert("RGB"))


def _decode_opencv(p: Path, pillow_reason: str) -> np.ndarray:
    """RGB uint8 via ``cv2.imdecode`` (all channels, native depth), normalised like Pillow's result."""
    try:
        data = np.fromfile(p, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"{p}: cannot read ({exc.strerror or exc})") from None
    try:
        arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        arr = None
    if arr is None or arr.size == 0:
        raise ImageError(f"{p}: {pillow_reason}")
    check_size(p, arr.shape[1], arr.shape[0])
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        grey = to_uint8(arr)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ImageError(f"{p}: unsupported image layout {arr.shape}")
    rgb = to_uint8(arr[:, :, 2::-1])
    if arr.shape[2] == 4:  # composite on white, as for Pillow's alpha
        alpha = to_uint8(arr[:, :, 3]).astype(np.float32)[:, :, None] / 255.0
        rgb = np.clip(rgb * alpha + 255.0 * (1.0 - alpha) + 0.5, 0, 255).astype(np.uint8)
    return rgb


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Samples of any depth scaled to 0..255 by their type's full range (not clipped, not stretched).

    16-bit: ``v / 257`` (65535 -> 255). Floats: 0..1 is the nominal range (HDR highlights above 1 saturate).
    32-bit integers (Pillow's ``I`` mode, in practice narrower data widened) by the narrowest of 8 or 16 bits
    that holds them, else by their own maximum.
    """
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if arr.dtype.kind == "f":
        a = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    a = arr.astype(np.int64)
    if arr.dtype.itemsize == 1:  # int8: shift to unsigned
        return (a - np.iinfo(arr.dtype).min).astype(np.uint8)
    peak = int(a.max(initial=0))
    if arr.dtype.itemsize == 2 or 255 < peak <= 65535:
        top = 65535
    elif peak <= 255:  # 32-bit container holding 8-bit values
        return np.clip(a, 0, 255).astype(np.uint8)
    else:
        top = peak
    a = np.clip(a, 0, top)
    return ((a * 255 + top // 2) // top).astype(np.uint8)
