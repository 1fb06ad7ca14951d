"""Motion gating: the pure decision classes on synthetic frames, and region detection with the real detector."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from stream.config import MotionConfig, load_config
from stream.media.clips import astronaut_head
from stream.pipeline.motion import DetectPlanner, MotionDetector, MotionResult, clip_regions, merge_boxes

SIZE = (1280, 720)


def room(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bg = cv2.GaussianBlur(rng.integers(60, 190, (SIZE[1] // 16, SIZE[0] // 16, 3), dtype=np.uint8), (3, 3), 0)
    return cv2.resize(bg, SIZE, interpolation=cv2.INTER_CUBIC)


def noisy(frame: np.ndarray, rng: np.random.Generator, sigma: float = 3.0, gain: float = 1.0) -> np.ndarray:
    return np.clip(frame.astype(np.float32) * gain + rng.normal(0, sigma, frame.shape[:2] + (1,)), 0, 255).astype(np.uint8)


def with_head(frame: np.ndarray, x: int, y: int, height: int = 200) -> np.ndarray:
    head = astronaut_head()
    head = cv2.resize(head, (int(head.shape[1] * height / head.shape[0]), height))
    out = frame.copy()
    out[y : y + height, x : x + head.shape[1]] = head
    return out


def warmed(cfg: MotionConfig, bg: np.ndarray, rng, mask=()) -> tuple[MotionDetector, float]:
    md = MotionDetector(cfg, mask)
    t = 0.0
    for _ in range(cfg.warmup_frames + 2):
        md.update(noisy(bg, rng), t)
        t += 0.04
    return md, t


def test_sensor_noise_is_not_motion():
    rng = np.random.default_rng(1)
    bg = room()
    md, t = warmed(MotionConfig(), bg, rng)
    for _ in range(50):
        r = md.update(noisy(bg, rng, sigma=4.0), t)
        t += 0.04
        assert not r.moving and not r.global_change


def test_a_face_entering_is_motion_where_it_is():
    rng = np.random.default_rng(2)
    bg = room()
    md, t = warmed(MotionConfig(), bg, rng)
    r = md.update(noisy(with_head(bg, 500, 300), rng), t)
    assert r.moving and not r.global_change
    box = r.boxes[np.argmax((r.boxes[:, 2] - r.boxes[:, 0]) * (r.boxes[:, 3] - r.boxes[:, 1]))]
    head_w = 200 * astronaut_head().shape[1] / astronaut_head().shape[0]
    assert box[0] <= 500 and box[1] <= 300 and box[2] >= 500 + head_w - 1 and box[3] >= 499  # covers the head
    assert (box[2] - box[0]) * (box[3] - box[1]) < 0.2 * SIZE[0] * SIZE[1]  # and not the frame


def test_a_lighting_change_is_one_global_change_then_still():
    rng = np.random.default_rng(3)
    bg = room()
    md, t = warmed(MotionConfig(), bg, rng)
    # a side lamp switched off: the left half darkens (gain compensation alone cannot undo it)
    dark = bg.copy()
    dark[:, : SIZE[0] // 2] = (dark[:, : SIZE[0] // 2] * 0.5).astype(np.uint8)
    results = []
    for _ in range(10):
        results.append(md.update(noisy(dark, rng), t))
        t += 0.04
    assert results[0].global_change
    assert not any(r.moving for r in results[2:]), [r.share for r in results]


def test_uniform_exposure_change_is_compensated():
    rng = np.random.default_rng(4)
    bg = room()
    md, t = warmed(MotionConfig(), bg, rng)
    r = md.update(noisy(bg, rng, gain=0.75), t)
    assert not r.moving and not r.global_change


def test_mask_zone_ignores_motion_inside_it():
    rng = np.random.default_rng(5)
    bg = room()
    zone = [[(0.3, 0.3), (0.7, 0.3), (0.7, 0.9), (0.3, 0.9)]]
    md, t = warmed(MotionConfig(), bg, rng, zone)
    assert not md.update(noisy(with_head(bg, 500, 300), rng), t).moving  # inside the zone
    md2, t2 = warmed(MotionConfig(), bg, rng, zone)
    assert md2.update(noisy(with_head(bg, 50, 50), rng), t2).moving  # outside it


def test_config_refuses_a_bad_mask_zone():
    with pytest.raises(Exception, match="at least 3"):
        load_config(overrides={"cameras": [{"name": "a", "source": "x", "motion_mask": [[[0, 0], [1, 0]]]}]})
    with pytest.raises(Exception, match="0..1"):
        load_config(overrides={"cameras": [{"name": "a", "source": "x", "motion_mask": [[[0, 0], [1.5, 0], [1, 1]]]}]})


NONE = MotionResult(np.zeros((0, 4)))


def moving(*boxes) -> MotionResult:
    return MotionResult(np.array(boxes, np.float64))


def test_planner_first_frame_whole_then_skips_a_still_empty_scene():
    p = DetectPlanner(MotionConfig())
    assert p.plan(0.0, *SIZE, NONE, np.zeros((0, 4))).kind == "full"
    kinds = [p.plan(i * 0.04, *SIZE, NONE, np.zeros((0, 4))).kind for i in range(1, 200)]
    assert set(kinds) == {"skip"}


def test_planner_detects_motion_onset_at_once_then_every_interval():
    cfg = MotionConfig(detect_interval_s=0.15)
    p = DetectPlanner(cfg)
    p.plan(0.0, *SIZE, NONE, np.zeros((0, 4)))
    for i in range(1, 10):
        p.plan(i * 0.04, *SIZE, NONE, np.zeros((0, 4)))
    box = (100, 100, 300, 300)
    plans = [p.plan(0.4 + i * 0.04, *SIZE, moving(box), np.zeros((0, 4))) for i in range(20)]
    assert plans[0].kind == "regions"  # the onset: at once
    detected = [i for i, pl in enumerate(plans) if pl.kind == "regions"]
    gaps = np.diff(detected) * 0.04
    assert gaps.max() <= cfg.detect_interval_s + 0.04 + 1e-9 and gaps.min() >= cfg.detect_interval_s - 1e-9
    r = plans[0].regions[0]
    assert r[0] <= 100 and r[1] <= 100 and r[2] >= 300 and r[3] >= 300


def test_planner_keeps_a_still_track_alive_and_detects_whole_frames_periodically():
    cfg = MotionConfig(still_interval_s=0.5, full_frame_s=10.0)
    p = DetectPlanner(cfg)
    track = np.array([[600.0, 300, 700, 420]])
    p.plan(0.0, *SIZE, NONE, track)
    plans = [(i * 0.04, p.plan(i * 0.04, *SIZE, NONE, track)) for i in range(1, 300)]
    detected = [t for t, pl in plans if pl.kind != "skip"]
    assert np.diff(detected).max() <= 0.5 + 0.04 + 1e-9  # re-detected at least every still_interval_s
    assert len(detected) <= 300 * 0.04 / 0.5 + 2  # and not much more often (the periodic whole frame comes on top)
    full = [t for t, pl in plans if pl.kind == "full"]
    assert full and abs(full[0] - 10.0) < 0.05


def test_planner_global_change_is_one_whole_frame():
    p = DetectPlanner(MotionConfig())
    p.plan(0.0, *SIZE, NONE, np.zeros((0, 4)))
    p.plan(1.0, *SIZE, NONE, np.zeros((0, 4)))
    g = MotionResult(np.array([[0.0, 0, *SIZE]]), 0.9, global_change=True)
    assert p.plan(1.04, *SIZE, g, np.zeros((0, 4))).kind == "full"
    assert p.plan(1.08, *SIZE, g, np.zeros((0, 4))).kind == "skip"  # not again before the interval


def test_regions_covering_most_of_the_frame_become_a_whole_frame():
    p = DetectPlanner(MotionConfig(max_region_share=0.5))
    p.plan(0.0, *SIZE, NONE, np.zeros((0, 4)))
    assert p.plan(1.0, *SIZE, moving((0, 0, 1200, 700)), np.zeros((0, 4))).kind == "full"


def test_merge_and_clip_regions_are_disjoint_inside_the_frame():
    merged = merge_boxes(np.array([[0, 0, 100, 100], [50, 50, 200, 200], [500, 500, 600, 600]], np.float64))
    assert len(merged) == 2
    r = clip_regions(np.array([[-50, -50, 10, 10], [1270, 700, 1300, 740]], np.float64), *SIZE)
    assert (r[:, :2] >= 0).all() and (r[:, 2] <= SIZE[0]).all() and (r[:, 3] <= SIZE[1]).all()
    assert ((r[:, 2:] - r[:, :2]) > 0).all()


def test_a_40px_face_in_1080p_is_found_in_its_region(analyzer):
    """The point of region detection: the face keeps its pixels. Whole-frame detection at a 640 px input loses it."""
    from engines.detector import Detector

    det: Detector = analyzer.detector
    frame = cv2.resize(room(7), (1920, 1080))
    head = astronaut_head()  # the face is ~0.55 of the head crop's height
    h = 76
    small = cv2.resize(head, (int(head.shape[1] * h / head.shape[0]), h))
    frame[600 : 600 + h, 900 : 900 + small.shape[1]] = small
    region = np.array([[850, 550, 1050, 750]])
    found = det.detect_regions(frame, region)
    assert len(found) == 1 and found.sizes[0] >= 30
    cx = (found.boxes[0, 0] + found.boxes[0, 2]) / 2
    assert 900 <= cx <= 900 + small.shape[1]  # in frame coordinates
    saved = det.max_side
    try:
        det.max_side = 640
        assert len(det.detect(frame)) == 0
    finally:
        det.max_side = saved


# ------------------------------------------------------------------------ through the real pipeline (scan)
def scan_scene(tmp_path, gallery, actors, gated: bool, duration_s: float, lighting=()):
    from stream.media.clips import render_scene
    from stream.scan.run import scan_videos

    clip = render_scene(tmp_path / f"scene-{gated}.mp4", actors, size=(640, 360), fps=10.0, duration_s=duration_s,
                        lighting=list(lighting))
    cfg = load_config(overrides={"data_dir": str(tmp_path), "engines": {"engine": "onnxruntime", "threads": 2},
                                 "alerts": {"cooldown_s": 0, "sinks": {"console": False}},
                                 "metrics": {"enabled": False}, "motion": {"enabled": gated}})
    v = scan_videos(cfg, [str(clip)], 1, str(gallery), False, progress=False, timeout_s=300).videos[0]
    assert v.status == "complete"
    return [e for e in v.events if e.identity == "astronaut"]


def test_gated_scan_alerts_a_person_standing_still_from_the_start_and_one_walking_in_after_a_lighting_change(
        tmp_path, astro_gallery):
    """Nobody moves for the first 4 s but a person stands there from frame 0 (only the whole-frame detection at the
    start can find them); the lights dim at 2 s; a second person walks in at 4.5 s. Both are alerted, each once."""
    from stream.media.clips import Actor

    head = astronaut_head()
    actors = [Actor(head, 150, [(0.0, 0.25, 0.5), (4.0, 0.25, 0.5)]),
              Actor(cv2.flip(head, 1), 150, [(4.5, 0.95, 0.5), (7.5, 0.6, 0.5)])]
    events = scan_scene(tmp_path, astro_gallery, actors, True, 8.0, lighting=[(2.0, 0.7)])
    starts = sorted(e.video_time for e in events)
    assert len(events) == 2, starts
    # the first within the warm-up's whole-frame detections (every detect_interval_s) and the still track's
    # re-detection (still_interval_s 0.5 s); the second within a detection interval of its entry plus a few looks
    assert starts[0] <= 0.6 and 4.5 <= starts[1] < 4.5 + 0.6, starts


@pytest.mark.parametrize("kind", ["missing", "fifo", "not-a-video"])
def test_motion_plan_tool_refuses_bad_input_in_one_line(tmp_path, kind):
    import os
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "x.mp4"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "not-a-video":
        path.write_text("hello")
    tool = Path(__file__).resolve().parent.parent / "tools" / "motion_plan.py"
    r = subprocess.run([sys.executable, str(tool), str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(path) in lines[0] and "Traceback" not in r.stderr


# --- the live detect interval under load ----------------------------------------------------------------------

def test_load_interval_grows_when_busy_and_comes_back_when_idle():
    from stream.pipeline.motion import LoadInterval

    li = LoadInterval(0.15, 0.6, window_s=1.0)
    t = 0.0
    values = []
    for _ in range(60):  # 90 % busy: 0.09 s of work every 0.1 s
        t += 0.1
        values.append(li.observe(0.09, t))
    assert values[0] == 0.15 and max(values) == pytest.approx(0.6) and values == sorted(values)
    for _ in range(100):  # 10 % busy
        t += 0.1
        li.observe(0.01, t)
    assert li.value == pytest.approx(0.15)


def test_load_interval_holds_inside_the_band_and_never_leaves_its_bounds():
    from stream.pipeline.motion import LoadInterval

    li = LoadInterval(0.15, 0.6, window_s=1.0)
    t = 0.0
    for _ in range(50):  # 65 % busy: between low and high, no change
        t += 0.1
        li.observe(0.065, t)
    assert li.value == 0.15 and li.last_share == pytest.approx(0.65, abs=0.05)
    fixed = LoadInterval(0.15, 0.15, window_s=1.0)  # max = base: adaptation off
    for _ in range(50):
        t += 0.1
        fixed.observe(0.1, t)
    assert fixed.value == 0.15


def test_planner_detects_less_often_with_a_longer_interval():
    """The planner takes the interval it is given: a moving track at 10 fps is re-detected every 2nd frame at
    0.15 s and every 5th at 0.45 s."""
    cfg = MotionConfig(warmup_frames=1)
    moving = MotionResult(np.array([[10.0, 10, 60, 60]]), 0.01)
    counts = {}
    for interval in (0.15, 0.45):
        p = DetectPlanner(cfg)
        p.plan(0.0, 640, 360, moving, np.zeros((0, 4)))  # first frame: whole
        kinds = [p.plan(i / 10, 640, 360, moving, np.array([[10, 10, 60, 60]]), interval).kind for i in range(1, 31)]
        counts[interval] = kinds.count("regions")
    assert counts[0.15] == 15 and counts[0.45] in (6, 7), counts


def test_max_detect_interval_below_the_interval_is_refused():
    with pytest.raises(ValueError, match="max_detect_interval_s"):
        MotionConfig(detect_interval_s=0.3, max_detect_interval_s=0.2)
