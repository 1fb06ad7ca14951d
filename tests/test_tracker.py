"""Tracker, scene cuts and message schema: pure logic; and one live run proving a looping camera alerts per loop."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from stream.config import Config
from stream.media.clips import astronaut_head
from stream.pipeline.messages import Decision, Embeddings, Frame, MessageError, SourceSummary, decode
from stream.pipeline.tracker import IouTracker, SceneCuts
from stream.store.events import EventStore
from stream.store.gallery import Gallery

TRACKING = Config().tracking  # the defaults, from their one source


def test_tracker_keeps_ids_for_moving_faces_and_splits_far_ones():
    tr = IouTracker(TRACKING.max_gap_s)
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
    tr = IouTracker(TRACKING.max_gap_s)
    box = np.array([[40, 250, 140, 380]], np.float32)
    step = np.array([200, 0, 200, 0], np.float32)  # 2x its width per processed frame
    first, _ = tr.update("cam", box, 0.0)
    second, _ = tr.update("cam", box + step * 0.5, 0.25)  # seen again soon (expanded boxes still overlap)
    assert second[0] == first[0]
    for k in range(2, 6):  # then only every 0.5 s: 2 widths apart, found only by the predicted position
        ids, _ = tr.update("cam", box + step * k, 0.5 * k - 0.25)
        assert ids[0] == first[0], k
    slow = IouTracker(TRACKING.max_gap_s)  # served every 0.4 s from the start: the second sighting is 1.6 widths away
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


def test_source_summary_round_trips_and_rejects_bad_counts():
    s = decode(SourceSummary("cam", 1.0, frames_expected=None, frames_decoded=3, frames_processed=2, decode_errors=1,
                             failure=None).encode())
    assert isinstance(s, SourceSummary) and (s.frames_expected, s.frames_decoded, s.frames_processed) == (None, 3, 2)
    for bad in ('"frames_decoded": -1', '"frames_expected": 2.5', '"decode_errors": true', '"failure": 3'):
        with pytest.raises(MessageError):
            decode([('{"t": "source", "camera": "c", "ts_capture": 1, "arrays": [], ' + bad + '}').encode()])
    f = decode(Frame("c", 1, 1.0, source_time=2.5).encode())
    assert f.source_time == 2.5
    with pytest.raises(MessageError):
        decode([b'{"t": "frame", "camera": "c", "seq": 1, "ts_capture": 1, "source_time": "x", "arrays": []}'])


# ----------------------------------------------------------------------------------------- scene cuts
def background(seed: int, lo: int = 40, hi: int = 200, size=(640, 360)) -> np.ndarray:
    """A textured scene like the test clips' (blurred random colour blocks)."""
    w, h = size
    small = np.random.default_rng(seed).integers(lo, hi, (h // 8, w // 8, 3), dtype=np.uint8)
    return cv2.resize(cv2.GaussianBlur(small, (5, 5), 0), (w, h), interpolation=cv2.INTER_CUBIC)


FACE = cv2.resize(astronaut_head(), (100, 117))


def with_face(scene: np.ndarray, x: int) -> np.ndarray:
    out = scene.copy()
    out[100:217, x:x + 100] = FACE
    return out


def test_scene_cuts_a_face_moving_over_the_same_scene_is_no_cut():
    cuts = SceneCuts(TRACKING.cut_threshold, TRACKING.max_gap_s)
    scene = background(0)
    assert cuts.check("cam", scene, 0.0) is None  # the first frame has nothing to compare with
    for k, x in enumerate(range(20, 520, 40)):  # the face enters, then walks across
        assert cuts.check("cam", with_face(scene, x), 0.2 * (k + 1)) is None, x


def scene(name: str) -> np.ndarray:
    """A real photo from scikit-image as a 640x360 camera frame."""
    from skimage import data

    return cv2.resize(np.ascontiguousarray(getattr(data, name)()[:, :, ::-1]), (640, 360))


def test_scene_cuts_a_different_scene_is_a_cut_per_camera():
    cuts = SceneCuts(TRACKING.cut_threshold, TRACKING.max_gap_s)
    cafe, cat = scene("coffee"), scene("chelsea")
    assert cuts.check("cam", with_face(cafe, 100), 0.0) is None
    assert cuts.check("other", cat, 0.0) is None  # each camera has its own previous frame
    assert cuts.check("cam", with_face(cat, 100), 0.2) == "cut"  # same face, same place, new scene
    assert cuts.check("cam", with_face(cat, 140), 0.4) is None  # compared with the cut frame, not the old scene
    assert cuts.check("other", cat, 0.4) is None
    assert cuts.distance(cafe, cat) > TRACKING.cut_threshold > cuts.distance(cafe, with_face(cafe, 300))


def test_scene_cuts_a_change_of_lighting_is_no_cut():
    """Lamps on, a cloud, the camera's auto-gain: brighter or darker is the same scene (same people, same tracks)."""
    cuts = SceneCuts(TRACKING.cut_threshold, TRACKING.max_gap_s)
    frame = with_face(scene("astronaut"), 200)
    assert cuts.check("cam", frame, 0.0) is None
    assert cuts.check("cam", cv2.convertScaleAbs(frame, alpha=1.0, beta=30), 0.2) is None
    assert cuts.check("cam", cv2.convertScaleAbs(frame, alpha=0.6, beta=0), 0.4) is None


def test_scene_cuts_time_backwards_resets():
    cuts = SceneCuts(TRACKING.cut_threshold, TRACKING.max_gap_s)
    scene = with_face(background(0), 200)
    assert cuts.check("cam", scene, 10.0) is None
    assert cuts.check("cam", scene, 9.9) == "backwards"  # e.g. a replayed file looping
    assert cuts.check("cam", scene, 10.0) is None
    # live: wall time goes on, but the source's own clock (stream position) goes back: it looped or restarted
    assert cuts.check("live", scene, 100.0, source_t=2.8) is None
    assert cuts.check("live", scene, 100.2, source_t=3.0) is None
    assert cuts.check("live", scene, 100.4, source_t=0.04) == "backwards"
    assert cuts.check("live", scene, 100.6, source_t=None) is None  # a source without a clock: no verdict from it


def test_scene_cuts_gap_longer_than_max_gap_resets_and_forget_starts_over():
    cuts = SceneCuts(TRACKING.cut_threshold, max_gap_s=2.0)
    scene = with_face(background(0), 200)
    assert cuts.check("cam", scene, 0.0) is None
    assert cuts.check("cam", scene, 2.0) is None  # exactly max_gap_s: still the same scene
    assert cuts.check("cam", scene, 4.01) == "gap"
    cuts.forget("cam")
    assert cuts.check("cam", background(7, 0, 90), 0.0) is None  # a new source: nothing to compare with


def test_tracker_end_camera_gives_the_next_face_a_new_track():
    tr = IouTracker(TRACKING.max_gap_s)
    box = np.array([[100, 100, 200, 220]], np.float32)
    first, _ = tr.update("cam", box, 0.0)
    other, _ = tr.update("cam2", box, 0.0)
    assert tr.update("cam", box, 0.1)[0][0] == first[0]  # same place a moment later: the same track
    assert tr.end_camera("cam") == 1 and tr.end_camera("cam") == 0
    again, starts = tr.update("cam", box, 0.2)
    assert again[0] != first[0] and starts[0] == 0.2  # a new track, starting now
    assert tr.update("cam2", box, 0.2)[0][0] == other[0]  # other cameras keep theirs


def test_tracker_max_age_is_the_configured_gap():
    box = np.array([[100, 100, 200, 220]], np.float32)
    short = IouTracker(max_age_s=0.5)
    a, _ = short.update("cam", box, 0.0)
    assert short.update("cam", box, 0.6)[0][0] != a[0]
    long = IouTracker(max_age_s=5.0)
    b, _ = long.update("cam", box, 0.0)
    assert long.update("cam", box, 4.0)[0][0] == b[0]


# ----------------------------------------------------------------------------------------- live, end to end
LOOP_S = 2.0


def test_replayed_camera_alerts_once_per_loop(tmp_path, analyzer):
    """A looping file as a live camera, a face that never moves and cooldown 0: the clip restarting (its stream
    position going back to 0) ends the track, so every loop is a new track, decided and alerted anew. Before
    the fix the one track lasted forever: one alert in 35 s of a 3 s loop."""
    clip = tmp_path / "static.mp4"
    scene = with_face(background(0), 200)
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25, scene.shape[1::-1])
    for _ in range(int(LOOP_S * 25)):
        writer.write(scene)
    writer.release()
    gallery = tmp_path / "gal"
    Gallery(gallery).enroll("astronaut", analyzer.analyze(astronaut_head())[0].embedding[None])
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path), "engines": {"engine": "onnxruntime", "threads": 1}, "metrics": {"enabled": False},
        "matching": {"gallery": str(gallery)}, "alerts": {"cooldown_s": 0, "sinks": {"console": False}},
        "cameras": [{"name": "door", "source": str(clip), "fps": 5, "replay": True}]}))
    store = tmp_path / "events.sqlite"
    log = open(tmp_path / "run.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "run", "-c", str(cfg)], cwd=Path(__file__).parent.parent,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        evs: list = []
        while time.monotonic() < deadline and len(evs) < 4:
            time.sleep(0.5)
            evs = EventStore(store).events() if store.exists() else []
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    assert len(evs) >= 4, (tmp_path / "run.log").read_text()[-2000:]
    assert all(e.identity == "astronaut" for e in evs)
    assert len({e.track_id for e in evs}) == len(evs)  # a new track each time
    gaps = np.diff(sorted(e.ts_capture for e in evs))[1:]  # the first loop may start before the pipeline is up
    # once per loop, not once per frame (a loaded machine may miss a loop's decision, never split one)
    assert all(LOOP_S - 0.8 < g < 2 * LOOP_S + 0.8 for g in gaps), gaps


def emit_only_detect_stage():
    """A detect stage with its tracker and metrics but no sockets or models: ``emit`` appends to ``sent``."""
    from stream.pipeline.detect import DetectStage
    from stream.pipeline.stage import StageMetrics

    stage = DetectStage.__new__(DetectStage)
    stage.tracker = IouTracker(max_age_s=2.0)
    stage.metrics = StageMetrics()
    sent: list = []
    stage.out = None
    stage.send = lambda sock, msg, force=False: sent.append(msg) or True
    return stage, sent


def test_detect_stage_tracks_faces_the_quality_gate_keeps_from_embedding(astronaut_bgr, analyzer):
    """A face too small to embed for a while is still tracked, so its track does not stay behind and take over a
    face that appears nearby (seen on a generated clip: a name carried onto another person 270 px away)."""
    import cv2

    from engines.detections import Detections
    from stream.config import Config
    from stream.pipeline.messages import Frame

    stage, sent = emit_only_detect_stage()
    frame = cv2.resize(astronaut_bgr, (1024, 1024))
    face = analyzer.detector.detect(frame)
    assert len(face) == 1

    def at(i: int, dets: Detections) -> None:
        stage.emit(Frame("cam", i, float(i), float(i) / 10, i, image=frame), dets)

    # max_clipped off: the "someone else" below is the astronaut's landmarks moved onto her white suit
    stage.cfg = Config.model_validate({"quality": {"min_face": int(face.sizes[0] * 0.8), "max_clipped": 1.0}})
    c = (face.boxes[:, :2] + face.boxes[:, 2:]) / 2  # the same face at 0.6x about its centre: under min_face
    small = Detections(np.hstack([c - (c - face.boxes[:, :2]) * 0.6, c + (face.boxes[:, 2:] - c) * 0.6]), face.scores,
                       (c[:, None] + (face.landmarks - c[:, None]) * 0.6).astype(np.float32))
    at(0, face)
    first = sent[-1].track_ids[0]
    for i in range(1, 8):  # the face shrinks away (gated) and moves on, frame by frame
        shift = np.array([20.0 * i, 0.0], np.float32)
        at(i, Detections(small.boxes + np.tile(shift, 2), small.scores, small.landmarks + shift))
    assert len(sent) == 1  # gated faces are not sent
    other = Detections(face.boxes + np.array([0, 300, 0, 300], np.float32), face.scores, face.landmarks + [0, 300])
    at(8, other)  # someone else, where the first track's search area would have grown to
    assert sent[-1].track_ids[0] != first


def test_detect_stage_does_not_embed_a_face_lost_to_shadow_and_counts_it(astronaut_bgr, analyzer):
    """``quality.max_clipped``: a face half in deep shadow is tracked but not sent to embed, and the metrics say why
    (``gated_exposure``), so an operator can tell bad lighting from an empty scene."""
    from stream.config import Config
    from stream.pipeline.messages import Frame

    stage, sent = emit_only_detect_stage()
    stage.cfg = Config.model_validate({})
    face = analyzer.detector.detect(astronaut_bgr)
    shaded = astronaut_bgr.copy()
    cx = int(face.landmarks[0][2, 0])
    shaded[:, :cx] = (shaded[:, :cx] * 0.05).astype(np.uint8)
    stage.emit(Frame("cam", 0, 0.0, 0.0, 0, image=shaded), face)
    assert sent == [] and stage.metrics.counters["gated_exposure"] == 1 and stage.metrics.counters["gated"] == 1
    stage.emit(Frame("cam", 1, 0.1, 0.1, 1, image=astronaut_bgr), face)  # the light comes back
    assert len(sent) == 1 and stage.metrics.counters["gated_exposure"] == 1
