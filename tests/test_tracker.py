"""Tracker and message schema: pure logic."""
from __future__ import annotations

import numpy as np
import pytest

from stream.pipeline.messages import Decision, Embeddings, Frame, MessageError, decode
from stream.pipeline.tracker import IouTracker


def test_tracker_keeps_ids_for_moving_faces_and_splits_far_ones():
    tr = IouTracker()
    a = np.array([[100, 100, 200, 220]], np.float32)
    ids0, _ = tr.update("cam", a, 0.0)
    ids1, _ = tr.update("cam", a + [60, 0, 60, 0], 0.1)  # moved 60 % of its width between frames
    assert ids1[0] == ids0[0]
    far = np.array([[900, 100, 1000, 220]], np.float32)
    ids2, _ = tr.update("cam", np.vstack([a + [120, 0, 120, 0], far]), 0.2)
    assert ids2[0] == ids0[0] and ids2[1] != ids0[0]
    ids3, _ = tr.update("cam", a, 5.0)  # after max_age a new track starts
    assert ids3[0] not in (ids0[0], ids2[1])
    other, _ = tr.update("cam2", a, 5.0)  # cameras never share tracks
    assert other[0] != ids3[0]


def test_tracker_follows_a_fast_face_seen_rarely_by_its_velocity():
    """Under overload a camera is served ~2 fps: a walking face moves 2 widths between frames."""
    tr = IouTracker()
    box = np.array([[40, 250, 140, 380]], np.float32)
    step = np.array([200, 0, 200, 0], np.float32)  # 2x its width per processed frame
    first, _ = tr.update("cam", box, 0.0)
    second, _ = tr.update("cam", box + step * 0.5, 0.25)  # seen again soon (expanded boxes still overlap)
    assert second[0] == first[0]
    for k in range(2, 6):  # then only every 0.5 s: 2 widths apart, found only by the predicted position
        ids, _ = tr.update("cam", box + step * k, 0.5 * k - 0.25)
        assert ids[0] == first[0], k
    slow = IouTracker()  # served every 0.4 s from the start: the second sighting is 1.6 widths away
    a, _ = slow.update("cam", box, 0.0)
    b, _ = slow.update("cam", box + step * 0.8, 0.4)
    assert a[0] == b[0]
    c, _ = slow.update("cam", box + [900, 0, 900, 0], 0.8)  # far off the predicted path: someone else
    assert c[0] != a[0]


def test_messages_round_trip_and_reject_malformed():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    f = decode(Frame("c", 1, 12.5, image=img).encode())
    assert isinstance(f, Frame) and f.camera == "c" and np.array_equal(f.image, img)
    e = Embeddings("c", 1, 1.0, boxes=np.zeros((1, 4), np.float32), embedded=np.ones(1, bool),
                   embeddings=np.ones((1, 128), np.float32))
    back = decode(e.encode())
    assert isinstance(back, Embeddings) and back.embeddings.shape == (1, 128)
    parts = Frame("c", 1, 1.0, image=img).encode()
    with pytest.raises(MessageError):
        decode([b"not json", *parts[1:]])
    with pytest.raises(MessageError):
        decode([parts[0]])  # array announced, none sent
    with pytest.raises(MessageError):
        decode([b'{"t": "frame", "camera": "c", "seq": 1, "ts_capture": 1, "arrays": [["image", "uint8", [99, 99]]]}', parts[1]])
    with pytest.raises(MessageError):
        decode([b'{"t": "evil", "arrays": []}'])
    with pytest.raises(MessageError):
        decode(Decision("c", 1.0, 1, None, 0.0, 0.9, "unknown").encode(), expect=(Frame,))
