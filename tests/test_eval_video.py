"""``facewatch eval video``: generated labelled clips from the dev photos through the real pipeline, judged per pass.

Real models, real stage processes, a real clip written at test time (2 enrolled people, 1 pass each, 1 stranger;
at least two faces at once). The pipeline runs twice (~15-25 s each on 2 cores): once enrolled from a frame of
each person's own pass (so a working pipeline must name both right, and a label for someone who never appears
must come out missed), once with the two enrolments swapped (so both passes must be named wrong). Bad input
through the CLI fails in a second with one line naming the file and field, before any model loads.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from stream.cli import main
from stream.eval.video_clips import load_labels, make_clip_set
from stream.records import ScanEvent, VideoReport

REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def clip_set(tmp_path_factory, faces_root: Path) -> Path:
    """One generated clip and its label file."""
    out = tmp_path_factory.mktemp("evalclips")
    (labels,) = make_clip_set(faces_root / "wild_dev" / "ids", out, people=2, passes=1, strangers=1, seed=0)
    return labels


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("evalcfg")
    p = d / "cfg.yaml"
    p.write_text(yaml.safe_dump({"data_dir": str(d), "engines": {"engine": "onnxruntime", "threads": 2},
                                 "metrics": {"enabled": False}}))
    return p


def head_crop(labels: Path, app: dict, out: Path) -> Path:
    """The head of ``app`` as drawn on the second frame of its pass, written as a photo."""
    lab = json.loads(labels.read_text())
    cap = cv2.VideoCapture(str(labels.parent / lab["clip"]))
    t, x1, y1, x2, y2 = app["boxes"][1]
    cap.set(cv2.CAP_PROP_POS_FRAMES, int(round(t * lab["fps"])))
    ok, frame = cap.read()
    cap.release()
    assert ok
    cv2.imwrite(str(out), frame[int(y1):int(y2), int(x1):int(x2)])
    return out


@pytest.fixture(scope="module")
def own_frame_labels(clip_set: Path, tmp_path_factory) -> tuple[Path, Path]:
    """Label files for the same clip, enrolled from a frame of each person's own pass, plus a label for the first
    enrolled person where nobody appears (no boxes: matched by time): (right enrolment, swapped enrolment)."""
    d = tmp_path_factory.mktemp("ownframe")
    lab = json.loads(clip_set.read_text())
    lab["clip"] = str((clip_set.parent / lab["clip"]).resolve())
    enrolled = [a for a in lab["appearances"] if a["enrolled"]]
    crops = {a["identity"]: str(head_crop(clip_set, a, d / f"{a['identity']}.jpg")) for a in enrolled}
    first = min(a["start_s"] for a in lab["appearances"])
    assert first >= 0.7
    ghost = {"identity": enrolled[0]["identity"], "enrolled": True, "start_s": 0.0, "end_s": first - 0.2}
    right = {**lab, "enroll": {n: [p] for n, p in crops.items()}, "appearances": lab["appearances"] + [ghost]}
    a, b = sorted(crops)
    swapped = {**right, "enroll": {a: [crops[b]], b: [crops[a]]}}
    (d / "right.json").write_text(json.dumps(right))
    (d / "swapped.json").write_text(json.dumps(swapped))
    return d / "right.json", d / "swapped.json"


def cli(config: Path, *args: str):
    return CliRunner().invoke(main, ["eval", "video", "-c", str(config), *args])


# ----------------------------------------------------------------------------- the generator
def test_generated_clip_shows_no_enrolment_photo_several_photos_per_pass_and_two_faces_at_once(clip_set, faces_root):
    loaded = load_labels(clip_set)
    apps = loaded.appearances
    assert sorted(a.enrolled for a in apps) == [False, True, True]
    enrol_photos = {str(p.resolve()) for ps in loaded.enroll.values() for p in ps}
    assert all(len(ps) == 3 for ps in loaded.enroll.values())
    for a in apps:
        assert len(a.photos) == 3 and len(set(a.photos)) == 3  # a person turning
        assert not enrol_photos & set(a.photos)  # enrolment photos are never shown
        assert all(Path(p).parent.name == a.identity for p in a.photos)
        heights = [b[4] - b[2] for b in a.boxes]
        assert 140 <= min(heights) and max(heights) <= 290 and max(heights) - min(heights) >= 15  # scale change
        xs = [b[1] for b in a.boxes]
        assert xs[-1] - xs[0] > 300  # moving across the frame
        assert a.render["gain"][0] != a.render["gain"][1]  # a lighting change
    assert not (set(loaded.enroll) & {a.identity for a in apps if not a.enrolled})
    spans = sorted((a.start_s, a.end_s) for a in apps)
    assert any(s2 < e1 for (s1, e1), (s2, _) in zip(spans, spans[1:]))  # two faces at once
    cap = cv2.VideoCapture(str(loaded.clip))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == round(loaded.labels.duration_s * loaded.labels.fps)
    cap.release()


def test_generator_is_deterministic_for_a_seed(clip_set, faces_root, tmp_path):
    (again,) = make_clip_set(faces_root / "wild_dev" / "ids", tmp_path, people=2, passes=1, strangers=1, seed=0)
    assert json.loads(again.read_text())["appearances"] == json.loads(clip_set.read_text())["appearances"]


# ----------------------------------------------------------------------------- judging (no models)
def _report(events, observations) -> VideoReport:
    return VideoReport(file="c.mp4", camera="c", status="complete", events=events, observations=observations)


def test_tracks_go_to_the_face_whose_box_holds_them_and_stray_alerts_are_unlabelled(tmp_path):
    from stream.scan.evaluate import Clip, judge

    clip = tmp_path / "c.mp4"
    clip.write_bytes(b"x")
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"x")
    top = [[i / 10, 100, 0, 300, 200] for i in range(10, 40)]
    bottom = [[i / 10, 100, 300, 300, 500] for i in range(10, 40)]
    lab = {"clip": "c.mp4", "fps": 10, "enroll": {"ann": [str(photo)], "bob": [str(photo)]},
           "appearances": [{"identity": "ann", "enrolled": True, "start_s": 1.0, "end_s": 4.0, "boxes": top},
                           {"identity": "bob", "enrolled": True, "start_s": 1.0, "end_s": 4.0, "boxes": bottom},
                           {"identity": "eve", "enrolled": False, "start_s": 5.0, "end_s": 6.0},
                           {"identity": "ann", "enrolled": True, "start_s": 7.0, "end_s": 8.0}]}
    (tmp_path / "c.json").write_text(json.dumps(lab))
    c = Clip(load_labels(tmp_path / "c.json"), 10.0, 90, 9.0)
    obs = [(i, 1, [150, 50, 250, 150]) for i in range(10, 40)] + [(i, 2, [150, 350, 250, 450]) for i in range(10, 40)]
    obs += [(i, 3, [10, 10, 60, 60]) for i in range(50, 60)] + [(i, 4, [500, 10, 560, 60]) for i in range(85, 89)]
    ev = lambda who, t, tid: ScanEvent(kind="watchlist", identity=who, score=0.99, threshold=0.95, video_time=t,  # noqa: E731
                                       frame_index=int(t * 10), track_id=tid, track_start=None, box=[0, 0, 1, 1])
    apps, stray = judge(c, _report([ev("ann", 1.5, 1), ev("ann", 2.0, 2), ev("bob", 2.5, 2), ev("bob", 5.5, 3),
                                    ev("bob", 8.6, 4)], obs))
    assert [a.verdict for a in apps] == ["right", "wrong", "false_alarm", "missed"]
    assert apps[0].first_correct_s == 0.5 and apps[1].named == ["ann", "bob"] and apps[1].first_correct_s == 1.5
    assert [a.tracks for a in apps] == [1, 1, 1, 0]
    assert [(s["identity"], s["video_time"]) for s in stray] == [("bob", 8.6)]


# ----------------------------------------------------------------------------- the real pipeline
def test_eval_video_names_people_enrolled_from_their_own_pass_and_misses_someone_who_never_appears(
        config, own_frame_labels):
    right, _ = own_frame_labels
    res = cli(config, "--labels", str(right), "--profile", "fast", "--rule", "votes", "--json")
    assert res.exit_code == 0, res.output[-3000:]
    rep = json.loads(res.stdout)
    assert rep["complete"] and rep["clips"] == 1
    (row,) = rep["table"]
    assert (row["profile"], row["rule"], row["calibration"]) == ("fast", "votes", "shipped")
    assert row["enrolled_passes"] == 3 and row["stranger_passes"] == 1
    apps = rep["runs"][0]["appearances"]
    enrolled = [a for a in apps if a["enrolled"]]
    real, ghost = enrolled[:2], enrolled[2]
    assert [a["verdict"] for a in real] == ["right", "right"], apps
    for a in real:
        assert a["named"] == [a["identity"]] and a["tracks"] >= 1
        assert 0 <= a["first_correct_s"] <= a["end_s"] - a["start_s"]
    assert ghost["verdict"] == "missed" and ghost["tracks"] == 0 and ghost["first_correct_s"] is None
    (stranger,) = [a for a in apps if not a["enrolled"]]
    assert stranger["verdict"] == "quiet" and stranger["tracks"] >= 1
    assert (row["named_right"], row["missed"], row["wrong_name"], row["stranger_false_alarms"]) == (2, 1, 0, 0)
    assert row["right_rate"] == pytest.approx(2 / 3) and row["unlabelled_alerts"] == 0
    assert row["first_alert_median_s"] is not None


def test_swapped_enrolment_names_each_pass_wrong(config, own_frame_labels):
    from stream.config import load_config
    from stream.scan.evaluate import evaluate_video, load_clips

    _, swapped = own_frame_labels
    rep = evaluate_video(load_config(config), load_clips([swapped]), ["fast"], ["votes"])
    (run,) = rep.runs
    enrolled = [a for a in run.appearances if a.enrolled]
    assert [a.verdict for a in enrolled] == ["wrong", "wrong", "missed"]
    assert all(a.named and a.identity not in a.named and a.first_correct_s is None for a in enrolled[:2])
    s = run.summary()
    assert (s["named_right"], s["wrong_name"]) == (0, 2) and s["first_alert_median_s"] is None
    assert "wrong name" in "\n".join(rep.table_lines())


# ----------------------------------------------------------------------------- bad input: exit 2, one line
def one_line_error(res, *words: str) -> None:
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("facewatch: error: "), res.stderr
    assert "Traceback" not in res.output
    for w in words:
        assert w in lines[0], lines[0]


def _labels_with(clip_set: Path, tmp_path: Path, **change) -> Path:
    lab = json.loads(clip_set.read_text())
    lab["clip"] = str((clip_set.parent / lab["clip"]).resolve())
    lab.update(change)
    p = tmp_path / "labels.json"
    p.write_text(json.dumps(lab))
    return p


def test_missing_malformed_and_mistyped_label_files(config, clip_set, tmp_path):
    one_line_error(cli(config, "--labels", str(tmp_path / "nope.json")), "nope.json", "no such file")
    bad = tmp_path / "bad.json"
    bad.write_text('{"clip": "x.mp4", "fps": 10,')
    one_line_error(cli(config, "--labels", str(bad)), "bad.json", "not valid JSON")
    one_line_error(cli(config, "--labels", str(_labels_with(clip_set, tmp_path, fps="ten"))), "labels.json", "fps")
    lab = json.loads(clip_set.read_text())
    lab["appearances"][1]["start_s"] = [1]
    p = tmp_path / "typed.json"
    p.write_text(json.dumps(lab))
    one_line_error(cli(config, "--labels", str(p)), "typed.json", "appearances[1].start_s")
    lab = json.loads(clip_set.read_text())
    lab["appearances"][0]["end_s"] = lab["appearances"][0]["start_s"]
    p.write_text(json.dumps(lab))
    one_line_error(cli(config, "--labels", str(p)), "appearances[0].end_s", "after start_s")
    one_line_error(cli(config, "--dir", str(tmp_path / "nodir")), "--dir", "nodir")
    one_line_error(cli(config, "--labels", str(clip_set), "--profile", "quick"), "--profile", "fast, accurate")
    one_line_error(cli(config), "--labels", "--dir")


def test_labels_naming_a_missing_photo_a_missing_clip_or_one_that_does_not_decode(config, clip_set, tmp_path):
    lab = json.loads(clip_set.read_text())
    name = sorted(lab["enroll"])[0]
    gone = str(tmp_path / "gone.jpg")
    p = _labels_with(clip_set, tmp_path, enroll={**lab["enroll"], name: [gone]})
    one_line_error(cli(config, "--labels", str(p)), "labels.json", f"enroll.{name}[0]", "gone.jpg", "no such file")
    p = _labels_with(clip_set, tmp_path, clip="missing.mp4")
    one_line_error(cli(config, "--labels", str(p)), "labels.json", "clip", "missing.mp4", "no such file")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    p = _labels_with(clip_set, tmp_path, clip=str(junk))
    one_line_error(cli(config, "--labels", str(p)), "labels.json", "junk.mp4")
    lab = json.loads(clip_set.read_text())
    lab["appearances"][0]["enrolled"] = not lab["appearances"][0]["enrolled"]
    p.write_text(json.dumps({**lab, "clip": str((clip_set.parent / lab["clip"]).resolve())}))
    one_line_error(cli(config, "--labels", str(p)), "appearances[0].enrolled")


def test_a_fifo_as_labels_is_refused_without_being_opened(config, tmp_path):
    fifo = tmp_path / "labels.json"
    os.mkfifo(fifo)
    # a subprocess with a timeout: opening the FIFO would block forever (no writer), and that must not happen
    res = subprocess.run([sys.executable, "-m", "stream.cli", "eval", "video", "-c", str(config), "--labels", str(fifo)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().count("\n") == 0 and "labels.json" in res.stderr and "FIFO" in res.stderr


def test_a_profile_whose_licence_is_not_accepted_is_refused_in_one_line(clip_set, tmp_path):
    """``--profile arcface`` in a model cache where nobody accepted InsightFace's terms: one line, exit 2, before
    any clip is scanned or anything is downloaded."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(tmp_path), "home": str(tmp_path / "home"),
                                   "engines": {"engine": "onnxruntime", "threads": 2}, "metrics": {"enabled": False}}))
    one_line_error(cli(cfg, "--labels", str(clip_set), "--profile", "arcface"), "non-commercial",
                   "--accept-model-license")
    assert not (tmp_path / "home" / "models" / "sources").exists()
