"""RetinaFace on real photos: boxes, landmarks, batching, huge images, the dev detection set."""
from __future__ import annotations

import json

import cv2
import numpy as np

from engines.detector import priors


def iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# The astronaut's face, checked by eye on the image: roughly x 180-270, y 60-175.
ASTRONAUT_FACE = (178, 57, 273, 177)


def test_astronaut_face_and_landmarks(analyzer, astronaut_bgr):
    faces = analyzer.detector.detect(astronaut_bgr)
    assert len(faces) == 1
    assert faces.scores[0] > 0.99
    assert iou(faces.boxes[0], ASTRONAUT_FACE) > 0.8
    lm = faces.landmarks[0]
    x1, y1, x2, y2 = faces.boxes[0]
    assert np.all((lm[:, 0] > x1) & (lm[:, 0] < x2) & (lm[:, 1] > y1) & (lm[:, 1] < y2))
    left_eye, right_eye, nose, mouth_l, mouth_r = lm
    assert left_eye[0] < right_eye[0] and mouth_l[0] < mouth_r[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_l[1], mouth_r[1])


def test_batch_equals_single(analyzer, astronaut_bgr):
    flipped = np.ascontiguousarray(astronaut_bgr[:, ::-1])
    batch = analyzer.detector.detect_batch([astronaut_bgr, flipped])
    single = [analyzer.detector.detect(astronaut_bgr), analyzer.detector.detect(flipped)]
    for b, s in zip(batch, single):
        np.testing.assert_allclose(b.boxes, s.boxes, atol=0.05)
    # the flipped face is mirrored
    w = astronaut_bgr.shape[1]
    assert abs((w - batch[1].boxes[0, 2]) - batch[0].boxes[0, 0]) < 3


def test_huge_image_is_downscaled_and_mapped_back(analyzer, astronaut_bgr):
    big = cv2.resize(astronaut_bgr, (10000, 10000), interpolation=cv2.INTER_LINEAR)
    faces = analyzer.detector.detect(big)
    assert len(faces) == 1
    expected = np.array(ASTRONAUT_FACE) * (10000 / 512)
    assert iou(faces.boxes[0], expected) > 0.7


def test_greyscale_and_odd_sizes(analyzer, astronaut_bgr):
    grey = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY)
    assert len(analyzer.detector.detect(grey)) == 1
    odd = astronaut_bgr[:301, :333]
    assert len(analyzer.detector.detect(odd)) == 1


def test_no_face_in_noise(analyzer):
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    assert len(analyzer.detector.detect(noise)) == 0


def test_priors_layout():
    p = priors(64, 96)
    # stride 8: 8x12 cells x 2 sizes, 16: 4x6x2, 32: 2x3x2
    assert p.shape == (8 * 12 * 2 + 4 * 6 * 2 + 2 * 3 * 2, 4)
    np.testing.assert_allclose(p[0], [4 / 96, 4 / 64, 16 / 96, 16 / 64])
    np.testing.assert_allclose(p[1], [4 / 96, 4 / 64, 32 / 96, 32 / 64])


def test_dev_detection_set_all_18_faces(analyzer, faces_root):
    from stream.media.images import load_image

    det_dir = faces_root / "lab_dev" / "detection"
    truth = json.loads((det_dir / "ground_truth.json").read_text())["boxes"]
    found = total = false = 0
    for name, boxes in truth.items():
        faces = analyzer.detector.detect(load_image(det_dir / "images" / name))
        matched = set()
        for x, y, w, h in boxes:
            total += 1
            ious = [iou((x, y, x + w, y + h), b) for b in faces.boxes]
            if ious and max(ious) >= 0.5:
                found += 1
                matched.add(int(np.argmax(ious)))
        false += len(faces) - len(matched)
    assert total == 18
    assert found == 18
    assert false <= 1
