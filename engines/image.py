"""Image normalisation every model needs: whatever the caller has, 3-channel BGR uint8 comes out."""
from __future__ import annotations

import cv2
import numpy as np


def to_bgr(image: np.ndarray) -> np.ndarray:
    """Accept greyscale, BGR or BGRA uint8 and return 3-channel BGR."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {image.shape}")
    return image


def sharpness(chip_rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grey chip: low means blurred (the quality gate and unknown-face alerts)."""
    return float(cv2.Laplacian(cv2.cvtColor(chip_rgb, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())
