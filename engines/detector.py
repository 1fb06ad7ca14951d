"""RetinaFace (MobileNet-0.25) face detector: numpy image in, boxes + 5 landmarks out.

Constants below are the model's own (``../shared/models/MODELS.md``): BGR input minus the per-channel
mean, no scaling; priors with strides 8/16/32 and two sizes each; decoding with variances (0.1, 0.2).
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from engines.backends.base import InferenceBackend
from engines.detections import Detections
from engines.face_model import Capabilities, FaceDetector
from engines.image import to_bgr

MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)
STRIDES = (8, 16, 32)
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
VARIANCES = (0.1, 0.2)
PAD_MULTIPLE = 32  # the FPN up-sampling lines up exactly when H and W divide by the largest stride


@lru_cache(maxsize=16)
def priors(height: int, width: int) -> np.ndarray:
    """Prior boxes (cx, cy, w, h), normalised, in the order the network emits them."""
    out = []
    for stride, sizes in zip(STRIDES, MIN_SIZES):
        fh, fw = -(-height // stride), -(-width // stride)
        jj, ii = np.meshgrid(np.arange(fw), np.arange(fh))
        cx = ((jj.ravel() + 0.5) * stride / width)[:, None]
        cy = ((ii.ravel() + 0.5) * stride / height)[:, None]
        per = [np.hstack([cx, cy, np.full_like(cx, s / width), np.full_like(cy, s / height)]) for s in sizes]
        out.append(np.stack(per, axis=1).reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)


class Detector(FaceDetector):
    """RetinaFace on any backend. ``max_side`` downscales very large images before detection.

    The thresholds have no defaults here on purpose: the config (``stream.config.DetectorConfig``) is their
    one source, so the CLI, the pipeline and the benchmarks cannot disagree.
    """

    name = "retinaface"

    def __init__(
        self,
        backend: InferenceBackend,
        *,
        score_threshold: float,
        nms_threshold: float,
        max_side: int,
        fixed_input: tuple[int, int] | None = None,
        run_batch: int | None = None,
    ) -> None:
        self.backend = backend
        self.input_name = next(iter(backend.input_shapes))
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_side = max_side
        # A fixed (H, W) letterbox input, for engines built for one shape (TensorRT).
        self.fixed_input = fixed_input
        # Images per network call. On the CPU a batch is slower per image than single images (720p, 2 threads:
        # 59.7 ms/frame at batch 4 vs 40.6 ms alone, cache-bound), so ONNX Runtime gets one image per call;
        # a GPU engine gets the whole batch.
        self.run_batch = run_batch if run_batch is not None else (1 if backend.name == "onnxruntime" else 1 << 30)
        self.capabilities = Capabilities(prefers_batching=self.run_batch > 1, fixed_input=fixed_input)

    def _geometry(self, h: int, w: int) -> tuple[float, int, int]:
        """Scale to apply and the padded network input size for an h x w image."""
        if self.fixed_input is not None:
            fh, fw = self.fixed_input
            return min(fh / h, fw / w), fh, fw
        scale = min(1.0, self.max_side / max(h, w))
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        return scale, -(-sh // PAD_MULTIPLE) * PAD_MULTIPLE, -(-sw // PAD_MULTIPLE) * PAD_MULTIPLE

    def preprocess(self, images: list[np.ndarray]) -> tuple[np.ndarray, float]:
        """Same-size images -> one NCHW float32 blob (resized, zero-padded bottom/right, mean-subtracted)."""
        h, w = images[0].shape[:2]
        scale, ph, pw = self._geometry(h, w)
        sh, sw = min(ph, round(h * scale)), min(pw, round(w * scale))
        padded = []
        for img in images:
            img = to_bgr(img)
            if img.shape[:2] != (h, w):
                raise ValueError("a detection batch must hold images of one size")
            if (sh, sw) != (h, w):
                img = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            # Padded with the mean colour, i.e. 0 after mean subtraction, which the network reads as background.
            padded.append(cv2.copyMakeBorder(img, 0, ph - sh, 0, pw - sw, cv2.BORDER_CONSTANT, value=MEAN_BGR.tolist()))
        # OpenCV's blob maker does the float conversion, mean subtraction and NCHW layout in one C++ pass.
        return cv2.dnn.blobFromImages(padded, 1.0, (pw, ph), MEAN_BGR.tolist(), swapRB=False, crop=False), scale

    def detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        """Detect faces in a batch of same-size images."""
        out: list[Detections] = []
        for i in range(0, len(images), self.run_batch):
            chunk = images[i : i + self.run_batch]
            blob, scale = self.preprocess(chunk)
            loc, conf, lms = self.backend.run({self.input_name: blob})
            out += self.postprocess(loc, conf, lms, blob.shape[2], blob.shape[3], scale, chunk[0].shape[:2])
        return out

    def postprocess(
        self,
        loc: np.ndarray,
        conf: np.ndarray,
        lms: np.ndarray,
        in_h: int,
        in_w: int,
        scale: float,
        image_hw: tuple[int, int],
    ) -> list[Detections]:
        """Decode network outputs of one batch into per-image ``Detections`` in original pixel coordinates."""
        pri = priors(in_h, in_w)
        v0, v1 = VARIANCES
        to_px = np.array([in_w, in_h], dtype=np.float32) / scale
        h, w = image_hw
        results = []
        for b in range(loc.shape[0]):
            scores = conf[b, :, 1]
            keep = np.flatnonzero(scores > self.score_threshold)
            if keep.size == 0:
                results.append(Detections.empty())
                continue
            p, l, s = pri[keep], loc[b, keep], scores[keep]
            centre = p[:, :2] + l[:, :2] * v0 * p[:, 2:]
            size = p[:, 2:] * np.exp(l[:, 2:] * v1)
            boxes = np.hstack([centre - size / 2, centre + size / 2]) * np.tile(to_px, 2)
            marks = (p[:, None, :2] + lms[b, keep].reshape(-1, 5, 2) * v0 * p[:, None, 2:]) * to_px
            xywh = np.hstack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]])
            idx = cv2.dnn.NMSBoxes(xywh.tolist(), s.tolist(), self.score_threshold, self.nms_threshold)
            idx = np.asarray(idx, dtype=np.int64).reshape(-1)
            idx = idx[np.argsort(-s[idx])]
            boxes = boxes[idx]
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
            results.append(Detections(boxes.astype(np.float32), s[idx].astype(np.float32), marks[idx].astype(np.float32)))
        return results
