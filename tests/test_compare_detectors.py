"""tools/compare_detectors.py: bad input is one line and exit 2; a small real run gives the three rows.

The tool runs as a subprocess (as a user runs it); FACEWATCH_HOME is inherited from conftest's ``fw_home``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOOL = REPO / "tools" / "compare_detectors.py"


def run_tool(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env)


def assert_one_line_error(res: subprocess.CompletedProcess, names: str) -> None:
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert names in lines[0]
    assert res.stdout == ""


def test_missing_pairs_file_is_one_line_exit_2(tmp_path: Path):
    missing = tmp_path / "nope" / "pairs.txt"
    assert_one_line_error(run_tool("--skip-detection", "--pairs", str(missing), "--root", str(tmp_path)), str(missing))


def test_missing_detection_dir_is_one_line_exit_2(tmp_path: Path):
    missing = tmp_path / "no_detection_here"
    assert_one_line_error(run_tool("--skip-recognition", "--detection", str(missing)), str(missing))


def test_detection_dir_without_ground_truth_is_one_line_exit_2(tmp_path: Path):
    (tmp_path / "images").mkdir()
    assert_one_line_error(run_tool("--skip-recognition", "--detection", str(tmp_path)), "ground_truth.json")


def test_without_mediapipe_the_retinaface_row_is_still_printed(tmp_path: Path):
    """A ``mediapipe`` that fails to import, first on the path: its rows are skipped with the reason."""
    (tmp_path / "mediapipe.py").write_text("raise ImportError('blocked by the test')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    res = run_tool("--skip-detection", "--skip-recognition", "--repeat", "1", env=env)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert "skipped: mediapipe full, mediapipe short" in res.stdout and "blocked by the test" in res.stdout
    table = [ln for ln in res.stdout.splitlines() if ln.startswith("| ")]
    assert [ln.split("|")[1].strip() for ln in table[1:]] == ["retinaface"]


def test_small_real_run_gives_three_plausible_rows(shared: Path):
    """``shared`` (conftest, from ``shared_dir()``) skips when ../shared/data/faces is absent."""
    pytest.importorskip("mediapipe")
    faces = shared / "data" / "faces"
    res = run_tool("--limit-pairs", "20", "--repeat", "2", "--json",
                   "--detection", str(faces / "lab_dev" / "detection"),
                   "--pairs", str(faces / "wild_dev" / "pairs.txt"), "--root", str(faces / "wild_dev" / "ids"))
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    assert out["machine"]["cpu_count"] == os.cpu_count()
    assert "--limit-pairs 20" in out["command"]
    rows = {r["detector"]: r for r in out["rows"]}
    assert list(rows) == ["retinaface", "mediapipe full", "mediapipe short"]

    ret = rows["retinaface"]
    assert ret["detection"]["detection_rate"] == 1.0 and ret["detection"]["misses"] == 0
    assert ret["detection"]["faces"] == 18
    assert ret["speed"]["small_faces_found"] >= 5  # RetinaFace sees 35-70 px faces at native resolution
    for name, r in rows.items():
        d, s, rec = r["detection"], r["speed"], r["recognition"]
        assert 0 <= d["detection_rate"] <= 1 and d["misses"] == d["faces"] - d["found"], name
        assert d["false_per_image"] >= 0 and 0 < d["mean_ms_per_image"] < 5000, name
        assert 0 < s["median_ms_1280x720"] < 5000 and 0 < s["median_ms_1920x1080"] < 5000, name
        assert 0 <= s["small_faces_found"] <= 6, name
        assert rec["pairs_same"] == rec["pairs_different"] == 20, name
        assert 0 <= rec["photos_no_face"] <= rec["photos"], name
        # 20 different pairs cannot measure FAR 1e-2: said, not guessed
        assert all(x["tar"] is None and "too few" in x["note"] for x in rec["tar_at_far"]), name
        at = rec["at_threshold"]
        assert 0 <= at["tar"] <= 1 and 0 <= at["far"] <= 1 and at["different_pairs"] == 20, name
    assert rows["mediapipe full"]["detection"]["detection_rate"] >= 0.5  # it finds most of the dev set's faces
    assert ret["recognition"]["at_threshold"]["tar"] >= 0.8
    assert ret["recognition"]["photos_no_face"] == 0
