"""Face detections of one image, and box geometry shared by the detector, the tracker and evaluation."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Detections:
    """Detections in one image, in that image's pixel coordinates, best score first."""

    boxes: np.ndarray  # [N, 4] x1, y1, x2, y2 float32
    scores: np.ndarray  # [N] float32
    landmarks: np.ndarray  # [N, 5, 2] float32: eyes (as seen), nose, mouth corners

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def sizes(self) -> np.ndarray:
        """min(width, height) of each box, the number the quality gate compares with."""
        wh = self.boxes[:, 2:] - self.boxes[:, :2]
        return wh.min(axis=1)

    def subset(self, keep: np.ndarray) -> "Detections":
        return Detections(self.boxes[keep], self.scores[keep], self.landmarks[keep])

    @staticmethod
    def empty() -> "Detections":
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` [N, 4] with every box of ``b`` [M, 4] (x1, y1, x2, y2)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)
