"""The two extension points for face models: ``FaceDetector`` and ``FaceEmbedder``, and the face crop between them.

Why a crop between them: a detector knows where a face is (box, 5 landmarks), an embedder knows how it wants the
face cut (its chip size and its landmark template). The detector side cuts one **canonical face crop** per face
(``CROP_SIZE`` square, similarity-aligned so that the 5 landmarks land on ``CROP_TEMPLATE``, with enough margin
around the face for every embedder's template). That crop is what travels from detect to embed, what the gallery
keeps for each sample (``gallery reembed`` moves a gallery to another model without the original photos) and
what an event shows as its face. Each embedder cuts its own chip out of the crop with one fixed similarity
transform (``chip_transform``), so nothing upstream knows any embedder's chip size or embedding size.

Margins (measured in inter-ocular distances from the mean of the 5 points): dlib's 150 px chip needs 1.37 up and
1.43 down, the ArcFace/FaceNet template 2.04 up and 1.14 down; the crop gives 2.35 up and 1.92 down, 2.13 to each
side, at 60 px between the eyes (more than any chip here has: dlib 53.5, FaceNet 50.3), so cutting a chip from the
crop never upsamples a face that the frame had at a higher resolution.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from engines.align import umeyama_similarity, warp_chip
from engines.detections import Detections, iou_matrix
from engines.image import to_bgr

CROP_SIZE = 256
#: ArcFace's 112 px 5-point template (eyes as seen, nose, mouth corners) scaled to 60 px between the eyes and
#: moved so that the points' mean sits at (0.5, 0.55) of the crop.
_ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                         [70.7299, 92.2041]], dtype=np.float64)
_S = 60.0 / (_ARCFACE_112[1, 0] - _ARCFACE_112[0, 0])
CROP_TEMPLATE = (_ARCFACE_112 - _ARCFACE_112.mean(0)) * _S + np.array([0.5, 0.55]) * CROP_SIZE


def face_crop(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The canonical BGR crop (``CROP_SIZE`` square) of the face whose 5 landmarks (image pixels) are given."""
    return warp_chip(to_bgr(image), landmarks, CROP_TEMPLATE, CROP_SIZE)


def face_crops(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Crops ``[N, CROP_SIZE, CROP_SIZE, 3]`` uint8 BGR for the faces ``landmarks [N, 5, 2]`` of one image."""
    img = to_bgr(image)
    if len(landmarks) == 0:
        return np.zeros((0, CROP_SIZE, CROP_SIZE, 3), np.uint8)
    return np.stack([warp_chip(img, lm, CROP_TEMPLATE, CROP_SIZE) for lm in landmarks])


def check_crops(crops: np.ndarray) -> np.ndarray:
    """``crops`` as a uint8 array ``[N, CROP_SIZE, CROP_SIZE, 3]``, or ValueError saying what it is instead."""
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[1:] != (CROP_SIZE, CROP_SIZE, 3) or crops.dtype != np.uint8:
        raise ValueError(f"expected face crops of shape [N, {CROP_SIZE}, {CROP_SIZE}, 3] uint8, "
                         f"got {crops.shape} {crops.dtype}")
    return crops


@dataclass(frozen=True)
class Capabilities:
    """What a model on its backend is good at, so callers adapt without testing names.

    ``prefers_batching``: one network call for a whole batch is faster per item than one call per item (GPU
    engines); on CPU ONNX Runtime it is not (720p detector: 59.7 ms/frame at batch 4 against 40.6 alone).
    ``fixed_input``: the (H, W) an engine was built for (TensorRT profiles); None = any size.
    """

    prefers_batching: bool = False
    fixed_input: tuple[int, int] | None = None


class FaceDetector(ABC):
    """Finds faces: boxes, scores and 5 landmarks in RetinaFace's order (eyes as seen, nose, mouth corners).

    Subclasses declare ``name`` (the config's ``detector.model``) and fill ``capabilities``.
    """

    name: ClassVar[str] = ""
    capabilities: Capabilities = Capabilities()

    @abstractmethod
    def detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        """Detections of each image of a batch of same-size images, in that image's pixels, best first."""

    def detect(self, image: np.ndarray) -> Detections:
        return self.detect_batch([image])[0]

    def detect_regions(self, image: np.ndarray, regions: np.ndarray) -> Detections:
        """Detections inside ``regions`` [K, 4] (int x1, y1, x2, y2, disjoint) of ``image``, in the image's pixels.

        Why: motion gating detects where something moved, cut from the full-resolution frame, so a small face keeps
        its pixels instead of shrinking with a whole frame scaled to the detector's input; and a region costs a
        fraction of a frame. Each region is one call (regions differ in size); a face cut by two touching regions
        is kept once (the higher score)."""
        found = []
        for x1, y1, x2, y2 in np.asarray(regions, np.int64).reshape(-1, 4):
            if x2 - x1 < 8 or y2 - y1 < 8:
                continue
            d = self.detect(np.ascontiguousarray(image[y1:y2, x1:x2]))
            if len(d):
                off = np.array([x1, y1], np.float32)
                found.append(Detections(d.boxes + np.tile(off, 2), d.scores, d.landmarks + off))
        if not found:
            return Detections.empty()
        d = Detections(*(np.concatenate(parts) for parts in zip(*((f.boxes, f.scores, f.landmarks) for f in found))))
        order = np.argsort(-d.scores, kind="stable")
        d = d.subset(order)
        keep: list[int] = []
        iou = iou_matrix(d.boxes, d.boxes)
        for i in range(len(d)):
            if all(iou[i, j] < 0.4 for j in keep):
                keep.append(i)
        return d.subset(np.array(keep, np.int64))


class FaceEmbedder(ABC):
    """Turns canonical face crops into L2-normalised embeddings.

    Each model module declares ``name`` (recorded with every vector it makes: a gallery refuses vectors of
    another model), ``dim``, ``chip_size`` and ``template`` (its 5 landmarks in chip pixels, RetinaFace order),
    and implements ``embed_chips``. ``embed_crops`` is what callers use; a fused embedder overrides it.
    """

    name: ClassVar[str] = ""
    dim: ClassVar[int] = 0
    chip_size: ClassVar[int] = 0
    template: ClassVar[np.ndarray] = np.zeros((5, 2))
    capabilities: Capabilities = Capabilities()

    @classmethod
    def chip_transform(cls) -> np.ndarray:
        """The fixed 2x3 similarity from the canonical crop to this model's chip."""
        return umeyama_similarity(CROP_TEMPLATE, cls.template)

    def chips(self, crops: np.ndarray) -> np.ndarray:
        """This model's RGB chips ``[N, chip_size, chip_size, 3]`` cut from BGR canonical crops."""
        crops = check_crops(crops)
        m = self.chip_transform()
        size = self.chip_size
        out = np.empty((len(crops), size, size, 3), np.uint8)
        for i, c in enumerate(crops):
            out[i] = cv2.warpAffine(c, m, (size, size), flags=cv2.INTER_AREA if m[0, 0] ** 2 + m[0, 1] ** 2 < 1
                                    else cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[:, :, ::-1]
        return out

    @abstractmethod
    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        """L2-normalised float32 ``[N, dim]`` for this model's RGB chips."""

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """L2-normalised float32 ``[N, dim]`` for canonical BGR crops (the one entry point of every caller)."""
        crops = check_crops(crops)
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        return self.embed_chips(self.chips(crops))

    @property
    def model_id(self) -> str:
        """What made a vector: recorded in galleries, calibrations and event faces, compared before use."""
        return self.name


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def embed_faces(embedder: FaceEmbedder, images: Sequence[np.ndarray], landmarks: np.ndarray) -> np.ndarray:
    """Embeddings of faces given as (source image, 5 landmarks) pairs: crop, then embed."""
    crops = [face_crop(img, lm) for img, lm in zip(images, landmarks)]
    if not crops:
        return np.zeros((0, embedder.dim), np.float32)
    return embedder.embed_crops(np.stack(crops))


#: The part of the crop that dlib's 150 px chip covers (rows, cols): sharpness is measured there, at 150 px, so
#: the blur thresholds (``quality.min_sharpness``, ``unknown.min_sharpness``) keep the scale they were set on.
_SHARP_ROWS, _SHARP_COLS = slice(53, 232), slice(40, 220)


def crop_sharpness(crop_bgr: np.ndarray) -> float:
    """Variance of the Laplacian of the face's central region at 150 px: low means blurred."""
    grey = cv2.cvtColor(np.ascontiguousarray(crop_bgr[_SHARP_ROWS, _SHARP_COLS]), cv2.COLOR_BGR2GRAY)
    grey = cv2.resize(grey, (150, 150), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


#: The lower inner face in the crop (rows, cols): below the eyes to below the mouth, between the pupils' columns
#: widened a little: cheeks, nose and mouth, which are skin for almost every face and inside the image for any
#: detected one. Why not the eyes: dark sunglasses are not lost exposure (measured on wild_dev: a region from the
#: forehead gated sunglasses photos; this one gates 1 % of wild_dev's es_ photos and 57 % of Extended Yale B's).
_FACE_ROWS, _FACE_COLS = slice(118, 190), slice(88, 168)
#: Grey levels at or beyond which a pixel has lost the face's detail to exposure (near black, near white).
CLIPPED_DARK, CLIPPED_BRIGHT = 25, 247


def crop_clipped(crop_bgr: np.ndarray) -> float:
    """Fraction of the lower inner face that is near black or near white: high means under- or over-exposed.

    Why it is gated: faces with much of their detail lost to shadow or glare look alike to an embedder. Measured
    with ArcFace on lab_dev: every false accept above wild_dev's own 1e-3 votes threshold came from Extended Yale
    B's extreme-lighting photos (541 within-family impostor pairs at 0.4471; 21 left among the photos this gate
    keeps at 0.2, and none from wild_dev, AT&T or the other families).
    """
    grey = cv2.cvtColor(np.ascontiguousarray(crop_bgr[_FACE_ROWS, _FACE_COLS]), cv2.COLOR_BGR2GRAY)
    return float(np.mean((grey <= CLIPPED_DARK) | (grey >= CLIPPED_BRIGHT)))


def exposure_problem(crop_bgr: np.ndarray, max_clipped: float) -> str | None:
    """Why a face crop is not decided on for exposure (one line), or None when it passes ``quality.max_clipped``.

    The one rule for the pipeline's quality gate and for the photos that calibrate and evaluate thresholds: a
    promise is measured on the faces that can decide, so both must drop the same ones.
    """
    c = crop_clipped(crop_bgr)
    if c > max_clipped:
        return (f"under- or over-exposed: {c:.0%} of the lower face is near black or white (shadow, glare or a dark "
                f"covering; quality.max_clipped {max_clipped:g})")
    return None

