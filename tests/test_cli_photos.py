"""The photo CLI end to end with real models: verify, enroll, list, identify, remove, and bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from stream.cli import main

REPO = Path(__file__).resolve().parent.parent


def run(*args: str):
    """``facewatch --json ARGS``: (exit status, the JSON answer, the error message then stderr's lines).

    Under ``--json`` an error is one JSON object on stdout with a stable code and the exit status; it is
    checked here for every failing call, so each test below also checks the machine-readable contract.
    """
    res = CliRunner().invoke(main, ["--json", *args], catch_exceptions=False)
    if res.exit_code == 0:
        return 0, (json.loads(res.stdout) if res.stdout.strip() else None), res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1, res.stdout
    err = json.loads(lines[0])
    assert err["exit_status"] == res.exit_code and err["error"]["code"] and "\n" not in err["error"]["message"]
    assert "Traceback" not in res.stderr
    return res.exit_code, None, "\n".join([err["error"]["message"], *res.stderr.strip().splitlines()])


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, astronaut_bgr_module):
    d = tmp_path_factory.mktemp("bad")
    good = d / "good.jpg"
    cv2.imwrite(str(good), astronaut_bgr_module)
    data = good.read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (d / "zero.jpg").write_bytes(b"")
    (d / "text.jpg").write_text("this is not a jpeg\n")
    (d / "adir.jpg").mkdir()
    garbage = bytearray(data)
    garbage[200:4000] = os.urandom(3800)
    (d / "corrupt.jpg").write_bytes(bytes(garbage))
    rng = np.random.default_rng(0)
    cv2.imwrite(str(d / "noface.jpg"), cv2.GaussianBlur(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8), (31, 31), 0))
    return d


@pytest.fixture(scope="module")
def astronaut_bgr_module():
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])


@pytest.mark.parametrize("name,why", [
    ("truncated.jpg", "truncated"), ("zero.jpg", "empty file"), ("text.jpg", "not an image"),
    ("adir.jpg", "directory"), ("missing.jpg", "no such file"), ("noface.jpg", "no face"),
])
def test_bad_photo_exit_2_one_line(bad_inputs, name, why):
    code, _, err = run("verify", str(bad_inputs / name), str(bad_inputs / "good.jpg"))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and why in lines[0] and name in lines[0], err


def test_corrupt_jpeg_is_refused_or_handled(bad_inputs):
    code, out, err = run("verify", str(bad_inputs / "corrupt.jpg"), str(bad_inputs / "good.jpg"))
    assert code in (0, 2)
    assert "Traceback" not in err


def test_greyscale_alpha_and_huge_images_work(tmp_path, astronaut_bgr_module):
    grey = tmp_path / "grey.jpg"
    cv2.imwrite(str(grey), cv2.cvtColor(astronaut_bgr_module, cv2.COLOR_BGR2GRAY))
    alpha = tmp_path / "alpha.png"
    rgba = cv2.cvtColor(astronaut_bgr_module, cv2.COLOR_BGR2BGRA)
    rgba[:, :, 3] = 255
    rgba[:40, :, 3] = 0  # a transparent strip
    cv2.imwrite(str(alpha), rgba)
    huge = tmp_path / "huge.jpg"
    cv2.imwrite(str(huge), cv2.resize(astronaut_bgr_module, (10000, 10000)), [cv2.IMWRITE_JPEG_QUALITY, 80])
    for other in (alpha, huge):
        code, out, err = run("verify", str(grey), str(other))
        assert code == 0, err
        assert out["same"] is True and out["score"] > 0.95


def test_enroll_skips_bad_photos_and_keeps_others(tmp_path, bad_inputs):
    g = tmp_path / "g"
    code, out, err = run("gallery", "enroll", "--gallery", str(g), "astro",
                         str(bad_inputs / "good.jpg"), str(bad_inputs / "noface.jpg"), str(bad_inputs / "text.jpg"))
    assert code == 0, err
    assert out["enrolled"] == 1 and len(out["skipped"]) == 2
    code, _, err = run("gallery", "enroll", "--gallery", str(g), "nobody", str(bad_inputs / "noface.jpg"))
    assert code == 2 and "nothing enrolled" in err
    code, out, _ = run("gallery", "list", "--gallery", str(g))
    assert out == {"persons": [{"name": "astro", "samples": 1}]}
    code, _, err = run("gallery", "remove", "--gallery", str(g), "ghost")
    assert code == 2 and "ghost" in err
    code, out, _ = run("gallery", "list", "--gallery", str(g))
    assert out["persons"] == [{"name": "astro", "samples": 1}]


def test_multi_face_photo_needs_largest(tmp_path, faces_root):
    img = faces_root / "lab_dev" / "detection" / "images" / "2008_001009.jpg"
    g = tmp_path / "g"
    code, _, err = run("gallery", "enroll", "--gallery", str(g), "x", str(img))
    assert code == 2 and "faces found" in err
    code, out, err = run("gallery", "enroll", "--gallery", str(g), "--largest", "x", str(img))
    assert code == 0 and out["enrolled"] == 1


WILD = ["es_Barack_Obama", "es_Tina_Fey", "es_Keanu_Reeves", "es_Halle_Berry", "es_Hugh_Laurie"]


def test_verify_and_identify_round_trip_on_wild_dev(tmp_path, faces_root):
    ids = faces_root / "wild_dev" / "ids"
    g = tmp_path / "g"
    for name in WILD:
        code, out, err = run("gallery", "enroll", "--gallery", str(g), name, *(str(ids / name / f"{i}.jpg") for i in (1, 2, 3)))
        assert code == 0 and out["enrolled"] == 3, err
    correct = 0
    probes = [(n, ids / n / f"{i}.jpg") for n in WILD for i in (10, 11, 12, 13)]
    for name, path in probes:
        code, out, err = run("identify", "--gallery", str(g), str(path))
        assert code == 0, err
        assert len(out["faces"]) >= 1
        correct += out["faces"][0]["identity"] == name
    # a loose floor: the default threshold is set for FAR 0.1% at N=10 on unseen people (README Accuracy), so it
    # accepts fewer genuine photos than a threshold tuned on these identities would (measured: 14 of 20)
    assert correct / len(probes) >= 0.6, correct
    # a non-enrolled identity of the same family is mostly "unknown"
    unknown = 0
    others = [ids / "es_Jessica_Alba" / f"{i}.jpg" for i in range(1, 11)]
    for path in others:
        code, out, _ = run("identify", "--gallery", str(g), str(path))
        unknown += out["faces"][0]["identity"] is None
    assert unknown >= 8
    code, out, _ = run("verify", str(ids / WILD[0] / "4.jpg"), str(ids / WILD[1] / "4.jpg"))
    assert code == 0 and out["same"] is False and out["threshold"] > 0.5


ENROLL_LOOP = """
import sys
from stream.cli import main
sys.argv = ["facewatch", "gallery", "enroll", "--gallery", sys.argv[1], sys.argv[2]] + sys.argv[3:]
main()
"""


def test_enrollment_killed_mid_way_leaves_previous_gallery(tmp_path, astronaut_jpg, astronaut_bgr):
    g = tmp_path / "g"
    code, _, err = run("gallery", "enroll", "--gallery", str(g), "first", str(astronaut_jpg))
    assert code == 0, err
    photos = []  # 30 different files (a repeated photo is skipped): the same face at slightly different sizes
    for i in range(30):
        photos.append(tmp_path / f"second{i}.jpg")
        cv2.imwrite(str(photos[-1]), cv2.resize(astronaut_bgr, (500 + i, 500 + i)))
    for delay in (0.5, 1.5, 2.5, 3.5):
        proc = subprocess.Popen([sys.executable, "-c", ENROLL_LOOP, str(g), "second"] + [str(p) for p in photos],
                                cwd=REPO, env={**os.environ}, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        code, out, err = run("gallery", "list", "--gallery", str(g))
        assert code == 0, err
        persons = {p["name"]: p["samples"] for p in out["persons"]}
        assert persons["first"] == 1
        assert persons.get("second", 30) % 30 == 0  # all 30 photos or none
        code, out, err = run("identify", "--gallery", str(g), str(astronaut_jpg))
        assert code == 0 and out["faces"][0]["identity"] in ("first", "second")
