"""Read user photos into BGR uint8 arrays, refusing anything broken with a message that says why.

Pillow decodes (it notices truncated files that OpenCV would half-decode silently), applies EXIF
orientation (phone photos), drops alpha and expands greyscale/palette images to 3 channels.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# A ceiling well above any camera (10000 x 10000 fits) but below what would exhaust memory.
MAX_PIXELS = 200_000_000


class ImageError(ValueError):
    """A photo that cannot be used; the message names the file and the reason."""


def load_image(path: str | Path) -> np.ndarray:
    """Decode ``path`` to an ``HxWx3`` BGR uint8 array or raise ``ImageError``."""
    p = Path(path)
    if not p.exists():
        raise ImageError(f"{p}: no such file")
    if p.is_dir():
        raise ImageError(f"{p}: is a directory, not an image")
    if p.stat().st_size == 0:
        raise ImageError(f"{p}: empty file (0 bytes)")
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                im.load()
                im = ImageOps.exif_transpose(im)
                if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                    im = im.convert("RGBA")
                    background = Image.new("RGBA", im.size, (255, 255, 255, 255))
                    im = Image.alpha_composite(background, im)
                rgb = np.asarray(im.convert("RGB"))
    except UnidentifiedImageError:
        raise ImageError(f"{p}: not an image file (unrecognised format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{p}: image larger than {MAX_PIXELS} pixels") from None
    except OSError as exc:
        raise ImageError(f"{p}: unreadable or truncated image ({exc})") from None
    except (SyntaxError, ValueError) as exc:  # Pillow raises these for some malformed headers
        raise ImageError(f"{p}: malformed image ({exc})") from None
    return np.ascontiguousarray(rgb[:, :, ::-1])
