"""``facewatch scan`` says how much of each file it read: complete, partial or failed, and exits accordingly.

Real clips rendered at test time (small, short: each scan runs in seconds), the real CLI as a subprocess, the
real stage processes. A FIFO must be refused without being opened: the subprocess timeout is the proof that
nothing blocks on it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stream.media.clips import Appearance, astronaut_head, render_clip

REPO = Path(__file__).resolve().parent.parent
FACEWATCH = [sys.executable, "-m", "stream.cli"]
FRAMES = 30  # 1.2 s at 25 fps
SCAN_TIMEOUT_S = 180  # generous for a loaded 2-core machine; a hang on a FIFO would never end


@pytest.fixture(scope="module")
def gallery(astro_gallery) -> Path:
    """The astronaut enrolled from the same photo the clips are made of (conftest's shared gallery)."""
    return astro_gallery


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """A good clip (.mp4) and, in a container that keeps its header when cut, a good and a truncated one (.avi)."""
    d = tmp_path_factory.mktemp("clips")
    face = [Appearance(astronaut_head(), 0.0, 1.2, height=160)]
    out = {"mp4": render_clip(d / "good.mp4", face, size=(320, 240), duration_s=FRAMES / 25),
           "avi": render_clip(d / "good.avi", face, size=(320, 240), duration_s=FRAMES / 25, codec="MJPG")}
    data = out["avi"].read_bytes()
    out["truncated"] = d / "truncated.avi"
    out["truncated"].write_bytes(data[: len(data) * 45 // 100])  # the first 45 % of the bytes
    return out


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cfg")
    path = d / "cfg.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(d), "engines": {"engine": "onnxruntime", "threads": 1},
                                    "metrics": {"enabled": False}}))
    return path


def scan(config: Path, gallery: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(FACEWATCH + ["scan", "-c", str(config), "--gallery", str(gallery), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=SCAN_TIMEOUT_S)


def by_file(report: dict) -> dict[str, dict]:
    return {Path(v["file"]).name: v for v in report["videos"]}


def test_good_file_is_complete_and_exits_0(config, gallery, clips, tmp_path):
    out = tmp_path / "report.json"
    res = scan(config, gallery, str(clips["mp4"]), "--every", "2", "--json-out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    (v,) = json.loads(out.read_text())["videos"]
    assert (v["status"], v["reason"], v["decode_errors"]) == ("complete", None, 0)
    assert v["frames_expected"] == v["frames_decoded"] == FRAMES
    assert v["frames_processed"] == FRAMES // 2  # --every 2: frames 0, 2, 4, ...
    assert [e["identity"] for e in v["events"] if e["kind"] == "watchlist"] == ["astronaut"]
    assert f"good.mp4: complete, {FRAMES} of {FRAMES} frames decoded, {FRAMES // 2} processed" in res.stdout


def test_truncated_file_is_partial_and_exits_3_with_the_report(config, gallery, clips, tmp_path):
    out = tmp_path / "report.json"
    res = scan(config, gallery, str(clips["truncated"]), "--json", "--json-out", str(out))
    assert res.returncode == 3, res.stderr[-2000:]
    printed = json.loads(res.stdout)  # the report is still produced, on stdout and in the file
    assert printed == json.loads(out.read_text())
    (v,) = printed["videos"]
    assert v["status"] == "partial", v
    assert v["frames_expected"] == FRAMES and 0 < v["frames_decoded"] < FRAMES - 1
    assert v["frames_processed"] == v["frames_decoded"]
    assert f"{v['frames_decoded']} of the {FRAMES}" in v["reason"] and "\n" not in v["reason"]
    assert "partial result" in res.stderr and "Traceback" not in res.stderr


def test_unreadable_files_fail_a_fifo_is_never_opened_and_each_file_keeps_its_status(config, gallery, clips, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    fifo = tmp_path / "camera.mp4"
    os.mkfifo(fifo)  # no writer ever: opening it would block forever
    folder = tmp_path / "folder.mp4"
    folder.mkdir()
    missing = tmp_path / "missing.mp4"
    out = tmp_path / "report.json"
    res = scan(config, gallery, str(empty), str(text), str(fifo), str(folder), str(missing), str(clips["avi"]),
               str(clips["truncated"]), "--json-out", str(out))
    assert res.returncode == 3, res.stderr[-2000:]
    videos = by_file(json.loads(out.read_text()))
    assert list(videos) == ["empty.mp4", "notes.mp4", "camera.mp4", "folder.mp4", "missing.mp4", "good.avi",
                            "truncated.avi"]  # input order
    reasons = {name: v["reason"] for name, v in videos.items()}
    assert {name: v["status"] for name, v in videos.items()} == {
        "empty.mp4": "failed", "notes.mp4": "failed", "camera.mp4": "failed", "folder.mp4": "failed",
        "missing.mp4": "failed", "good.avi": "complete", "truncated.avi": "partial"}, reasons
    assert "empty file" in reasons["empty.mp4"]
    assert "cannot be opened as a video" in reasons["notes.mp4"]
    assert "FIFO" in reasons["camera.mp4"] and "not opened" in reasons["camera.mp4"]
    assert "directory" in reasons["folder.mp4"]
    assert "no such file" in reasons["missing.mp4"]
    for name in ("empty.mp4", "notes.mp4", "camera.mp4", "folder.mp4", "missing.mp4"):
        assert (videos[name]["frames_decoded"], videos[name]["frames_processed"], videos[name]["events"]) == (0, 0, [])
    good = videos["good.avi"]
    assert good["frames_decoded"] == good["frames_expected"] == FRAMES and good["reason"] is None
    assert [e["identity"] for e in good["events"] if e["kind"] == "watchlist"] == ["astronaut"]
    assert "FAILED" in res.stdout and "PARTIAL" in res.stdout and "Traceback" not in res.stderr


def test_progress_counts_frames_detect_has_processed_not_frames_read(tmp_path):
    from stream.config import Config
    from stream.pipeline.supervisor import Child, Supervisor
    from stream.scan.collect import CollectStage
    from stream.scan.run import frames_processed

    cfg = Config.model_validate({"sockets": {"run_dir": str(tmp_path)}})
    sup = Supervisor(cfg, live=False, options={"files": [("a", "a.mp4")]}, serve_metrics=False, final=CollectStage)
    sup.children = [Child(spec, name) for name, spec in sup.specs(sup.endpoints())]  # the stages, not started
    assert frames_processed(sup) == 0  # no heartbeat yet
    for c in sup.children:
        c.metrics = {"capture": {"frames_out": 120}, "detect": {"frames_in": 40, "frames_out": 38}}.get(c.spec.kind, {})
    assert frames_processed(sup) == 40
