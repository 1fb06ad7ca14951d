"""MediaPipe BlazeFace face detector (``detector.model: mediapipe``, the ``mediapipe`` extra).

BlazeFace runs in MediaPipe Tasks' own TFLite runtime (XNNPACK on the CPU), not on facewatch's backends, so it
has no TensorRT engine. Two models (``detector.range``): ``short`` for faces close to the camera (doors, kiosks;
within about 2 m) and ``full`` for the rest (up to about 5 m). Both letterbox the whole image to their small input
(128 / 192 px), which is why they miss the small faces of a wide 1080p scene that RetinaFace finds at native size;
with motion gating they see the moving regions cut at full resolution instead.

Landmarks: BlazeFace gives 6 keypoints (eyes as seen, nose tip, mouth centre, two ear tragions) and no mouth
corners, while every consumer of ``Detections`` takes RetinaFace's 5 points. The canonical crop is therefore
aligned from the 4 points both have: a similarity fitted from (eyes, nose, mouth centre) to the crop template's
(eyes, nose, mean of the mouth corners), and the template's two mouth corners mapped back through it. Eyes and
nose stay as detected (the frontal-pose score reads them); the mouth corners are implied, symmetric about the
detected mouth centre's fit. What this costs recognition against RetinaFace's 5 points is measured in the README.
"""
from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from engines.align import umeyama_similarity
from engines.detections import Detections
from engines.face_model import CROP_TEMPLATE, FaceDetector
from engines.files import ModelError
from engines.image import to_bgr
from engines.native_stderr import NativeStderrFilter

Range = Literal["short", "full"]

#: The crop template's points that BlazeFace also has: eyes, nose, mouth centre (mean of the two corners).
_TEMPLATE_4 = np.vstack([CROP_TEMPLATE[:3], CROP_TEMPLATE[3:].mean(0, keepdims=True)])


def five_points(keypoints: np.ndarray) -> np.ndarray:
    """RetinaFace-order 5 landmarks ``[N, 5, 2]`` from BlazeFace keypoints ``[N, >=4, 2]`` (pixels; module docstring)."""
    kp = np.asarray(keypoints, np.float64)
    out = np.empty((len(kp), 5, 2), np.float32)
    for i, pts in enumerate(kp):
        m = umeyama_similarity(pts[:4], _TEMPLATE_4)
        inv = cv2.invertAffineTransform(m)
        corners = CROP_TEMPLATE[3:] @ inv[:, :2].T + inv[:, 2]
        out[i, :3] = pts[:3]
        out[i, 3:] = corners
    return out


def _mediapipe():
    try:
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision
    except ImportError as exc:
        raise ModelError(f"detector.model mediapipe needs the mediapipe extra: pip install 'facewatch[mediapipe]' "
                         f"({type(exc).__name__}: {exc})") from None
    return mp, BaseOptions, vision


class BlazeFaceDetector(FaceDetector):
    """BlazeFace through MediaPipe Tasks ``FaceDetector``; numpy BGR in, ``Detections`` out.

    ``score_threshold`` and ``nms_threshold`` have no defaults here: the config is their one source."""

    name = "mediapipe"

    def __init__(self, model_path: Path, *, range: Range, score_threshold: float, nms_threshold: float) -> None:
        mp, base_options, vision = _mediapipe()
        self._mp = mp
        self.range = range
        self.score_threshold = score_threshold
        self._quiet = NativeStderrFilter()
        opts = vision.FaceDetectorOptions(base_options=base_options(model_asset_path=str(model_path)),
                                          running_mode=vision.RunningMode.IMAGE,
                                          min_detection_confidence=score_threshold,
                                          min_suppression_threshold=nms_threshold)
        with self._quiet():
            try:
                self._task = vision.FaceDetector.create_from_options(opts)
            except (RuntimeError, ValueError) as exc:
                raise ModelError(f"{model_path}: MediaPipe refused the model ({str(exc).splitlines()[0][:200]})") from None
        # Closed when this object goes or, at the latest, when the interpreter starts to exit: MediaPipe's Python
        # side closes through a thread pool, which Python shuts down before atexit callbacks run, and its own
        # __del__ at teardown then prints a traceback. threading's exit hooks run before that shutdown.
        self._finalizer = weakref.finalize(self, _close, self._task, self._quiet)
        register = getattr(threading, "_register_atexit", None)
        if register is not None:
            register(self._finalizer)

    def detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        """One Tasks call per image (BlazeFace has no batch input)."""
        return [self._detect_one(img) for img in images]

    def _detect_one(self, image: np.ndarray) -> Detections:
        rgb = cv2.cvtColor(to_bgr(image), cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        with self._quiet():
            result = self._task.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb))
        dets = [d for d in result.detections if len(d.keypoints) >= 4]
        if not dets:
            return Detections.empty()
        boxes = np.array([[d.bounding_box.origin_x, d.bounding_box.origin_y,
                           d.bounding_box.origin_x + d.bounding_box.width,
                           d.bounding_box.origin_y + d.bounding_box.height] for d in dets], np.float32)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        scores = np.array([d.categories[0].score if d.categories else 0.0 for d in dets], np.float32)
        kps = np.array([[(k.x * w, k.y * h) for k in d.keypoints[:4]] for d in dets], np.float64)
        found = Detections(boxes, scores, five_points(kps))
        keep = np.flatnonzero((scores >= self.score_threshold) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
        found = found.subset(keep)
        return found.subset(np.argsort(-found.scores, kind="stable"))

    def close(self) -> None:
        self._finalizer()


def _close(task, quiet: NativeStderrFilter) -> None:
    try:
        with quiet():
            task.close()
    except RuntimeError:  # its thread pool is already shut down (exit): the process frees the native side
        task._handle = None  # noqa: SLF001 - so that MediaPipe's __del__ does not try again and print a traceback
    quiet.close()
