"""Detect + align + embed for still photos: the one code path the CLI, the gallery and evaluation share."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from engines.detections import Detections
from engines.face_model import FaceDetector, FaceEmbedder, face_crops
from engines.image import to_bgr


@dataclass
class AnalyzedFace:
    box: np.ndarray  # x1, y1, x2, y2
    det_score: float
    landmarks: np.ndarray  # [5, 2]
    embedding: np.ndarray  # [D], L2-normalised
    crop: np.ndarray | None = None  # the canonical face crop (BGR), what the gallery keeps for reembed


def largest_face(faces: list[AnalyzedFace]) -> AnalyzedFace:
    """The face with the largest box: the subject of a portrait, an enrollment photo or a pair image."""
    return max(faces, key=lambda f: float(np.prod(f.box[2:] - f.box[:2])))


class FaceAnalyzer:
    """Owns one ``FaceDetector`` and one ``FaceEmbedder`` (built from the config by ``stream.loaders.photo_analyzer``).

    Photos go the pipeline's way: detect, cut the canonical crop, let the embedder cut its chip from that, so a
    photo and a camera frame of the same face give the same vector."""

    def __init__(self, detector: FaceDetector, embedder: FaceEmbedder) -> None:
        self.detector = detector
        self.embedder = embedder

    def embed_faces(self, image: np.ndarray, faces: Detections) -> np.ndarray:
        return self.embedder.embed_crops(face_crops(image, faces.landmarks))

    def analyze(self, image: np.ndarray, *, pad_retry: bool = True) -> list[AnalyzedFace]:
        """All faces in ``image`` (best detection score first) with their embeddings.

        ``pad_retry``: tight face crops (ID photos, pre-cropped datasets) often give RetinaFace no
        context and no detection; when nothing is found we try once more with a 50 % border around the
        photo, then map the result back. Camera frames never need this.
        """
        faces = self.detector.detect(image)
        if len(faces) == 0 and pad_retry:
            h, w = image.shape[:2]
            py, px = h // 2, w // 2
            padded = cv2.copyMakeBorder(to_bgr(image), py, py, px, px, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            faces = self.detector.detect(padded)
            offset = np.array([px, py], dtype=np.float32)
            faces = Detections(faces.boxes - np.tile(offset, 2), faces.scores, faces.landmarks - offset)
        crops = face_crops(image, faces.landmarks)
        emb = self.embedder.embed_crops(crops)
        return [AnalyzedFace(faces.boxes[i], float(faces.scores[i]), faces.landmarks[i], emb[i], crops[i])
                for i in range(len(faces))]
