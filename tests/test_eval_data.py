"""Evaluation commands end to end on the shared dev data (skipped when ../shared is absent).

Small subsets keep this under a minute; the full-set numbers are in the README (Accuracy). The bounds
are loose floors a working system clears by a wide margin, not the dev-set results themselves.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from stream.cli import main
from stream.config import load_config


def cli(*args: str) -> dict:
    res = CliRunner().invoke(main, ["--json", *args], catch_exceptions=False)
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def wild(faces_root: Path) -> Path:
    return faces_root / "wild_dev"


@pytest.fixture(scope="module")
def small_pairs(tmp_path_factory, wild: Path) -> Path:
    """The first 100 same and the first 100 different pairs of wild_dev, as an LFW-format file."""
    lines = (wild / "pairs.txt").read_text().splitlines()
    body = [ln for ln in lines[1:] if ln.strip()]
    same = [ln for ln in body if len(ln.split()) == 3][:100]
    diff = [ln for ln in body if len(ln.split()) == 4][:100]
    p = tmp_path_factory.mktemp("pairs") / "pairs.txt"
    p.write_text("1\t100\n" + "\n".join(same + diff) + "\n")
    return p


def test_eval_verify_reports_accuracy_auc_and_tar_at_far_with_plot(tmp_path, small_pairs, wild):
    roc = tmp_path / "roc.png"
    rep = cli("eval", "verify", "--pairs", str(small_pairs), "--root", str(wild / "ids"), "--plot", str(roc))
    assert rep["genuine"] == 100 and rep["impostor"] == 100
    assert rep["accuracy_mean"] >= 0.85 and rep["auc"] >= 0.9
    rates = {r["target"]: r for r in rep["tar_at_far"]}
    assert set(rates) == {1e-2, 1e-3, 1e-4}
    assert 0.5 < rates[1e-2]["rate"] <= 1 and -1 <= rates[1e-2]["threshold"] <= 1
    # 100 impostor pairs cannot show a FAR of 1e-3: the report must say so instead of inventing a number
    assert rates[1e-3]["rate"] is None and "impostor" in rates[1e-3]["note"]
    assert roc.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def es8(tmp_path_factory, wild: Path) -> Path:
    """8 es_ identities x 10 photos, linked (never copied) from the shared data: 2,800 cross-identity pairs."""
    root = tmp_path_factory.mktemp("es8") / "ids"
    for d in sorted(wild.glob("ids/es_*"))[:8]:
        (root / d.name).mkdir(parents=True)
        for i in range(1, 11):
            os.symlink(d / f"{i}.jpg", root / d.name / f"{i}.jpg")
    return root


def test_eval_verify_reports_the_configured_threshold_against_its_claim(small_pairs, wild):
    rep = cli("eval", "verify", "--pairs", str(small_pairs), "--root", str(wild / "ids"))
    a, m = rep["at_threshold"], load_config().calibration
    assert a["threshold"] == m.threshold and a["far_claimed"] == m.far and a["gallery_size"] == m.gallery_size
    assert a["impostors"] == 100 and a["far"] == pytest.approx(a["false_accepts"] / 100)
    lo, hi = a["far_interval"]
    assert lo <= a["far"] <= hi and hi >= 0.0295  # 100 pairs: at best 0 of 100, upper bound ~3 %
    assert a["far_verdict"] == "consistent"  # 100 pairs can neither confirm nor refute FAR 0.1 %
    assert a["genuine"] == 100 and 0 < a["tar"] <= 1
    assert a["fpir"] == pytest.approx(1 - (1 - a["far"]) ** a["gallery_size"]) and "predicted" in a["fpir_method"]
    human = CliRunner().invoke(main, ["-q", "eval", "verify", "--pairs", str(small_pairs), "--root", str(wild / "ids")])
    line = [ln for ln in human.stdout.splitlines() if ln.startswith("at threshold")]
    assert human.exit_code == 0 and len(line) == 1 and f"{m.threshold:.4f}" in line[0] and "FPIR" in line[0]


def test_calibrate_uses_every_cross_identity_pair_and_writes_its_record(tmp_path, es8):
    cfg = tmp_path / "my.yaml"
    cfg.write_text("# my cameras\ncameras: []\n")
    res = cli("calibrate", "--pass-length", "5", "--root", str(es8), "--target-far", "0.02", "--write", str(cfg))
    assert res["impostors"] == 28 * 100 and res["identities"] == 8 and not res["sampled"]
    assert res["far_upper"] <= 0.02 and res["far_interval"][0] <= res["far"] <= res["far_upper"]
    assert res["threshold"] == pytest.approx(res["threshold_before_margin"] + res["margin"], abs=1e-9)
    loaded = load_config(cfg).calibration
    assert loaded.threshold == pytest.approx(res["threshold"]) and loaded.far == pytest.approx(0.02)
    assert loaded.impostors == 2800 and loaded.far_upper == pytest.approx(res["far_upper"], rel=1e-5)
    assert "2800 impostor pairs" in loaded.data and "# my cameras" in cfg.read_text()
    assert loaded.profile == "fast" and loaded.embedder == load_config().embedder_id
    t = res["track"]  # the track rule's threshold, calibrated on impostor passes, in the same record
    assert loaded.track_threshold == pytest.approx(t["threshold"]) and loaded.track_impostors == t["impostors"] > 0
    assert t["far_interval"][1] <= 0.02 and loaded.track_far_upper == pytest.approx(t["far_interval"][1], rel=1e-5)
    # the configured threshold measured again by eval identify: same pairs, same FAR, the claim kept
    rep = cli("-c", str(cfg), "eval", "identify", "--root", str(es8), "--enroll", "3")
    a = rep["at_threshold"]
    assert a["threshold"] == loaded.threshold and a["far_claimed"] == pytest.approx(0.02)
    assert a["impostors"] == 2800 and a["false_accepts"] == res["false_accepts"] and a["far_verdict"] == "kept"


def test_calibrate_drops_the_photos_the_exposure_gate_drops_live(tmp_path, es8):
    """The promise is about the faces that decide: a photo whose face the pipeline would not embed (half in deep
    shadow) is not a calibration trial either, and is counted with the photos without a face."""
    import cv2
    import numpy as np

    root = tmp_path / "ids"
    for d in sorted(es8.iterdir()):
        (root / d.name).mkdir(parents=True)
        for f in sorted(d.iterdir()):
            os.symlink(f.resolve(), root / d.name / f.name)
    first = sorted(root.iterdir())[0]
    for name in ("1.jpg", "2.jpg"):  # half of the face in deep shadow, as in Extended Yale B's side light
        img = cv2.imread(str(first / name))
        (first / name).unlink()
        img[:, : img.shape[1] // 2] = (img[:, : img.shape[1] // 2] * 0.05).astype(np.uint8)
        cv2.imwrite(str(first / name), img)
    args = ("calibrate", "--pass-length", "5", "--root", str(root), "--target-far", "0.02")
    res = cli(*args)
    assert res["photos_without_face"] == 2 and res["photos"] == 78
    assert res["impostors"] == 2800 - 7 * 10 * 2  # the first identity keeps 8 photos
    off = tmp_path / "off.yaml"
    off.write_text("quality:\n  max_clipped: 1.0\n")  # the gate off: every photo is a trial again
    assert cli("-c", str(off), *args)["impostors"] == 2800


def test_calibrate_refuses_a_far_the_data_cannot_support_and_names_what_it_can(tmp_path, es8):
    cfg = tmp_path / "keep.yaml"
    cfg.write_text("cameras: []\n")
    before = cfg.read_text()
    out = CliRunner().invoke(main, ["calibrate", "--pass-length", "5", "--root", str(es8), "--target-far", "0.001", "--write", str(cfg)])
    supportable = 1 - 0.05 ** (1 / 2800)  # 0.00107: 2,800 pairs with none accepted
    assert out.exit_code == 2 and out.stderr.count("\n") == 1
    assert "2800 impostor pairs" in out.stderr and f"{supportable:.3g}" in out.stderr and cfg.read_text() == before
    weak = CliRunner().invoke(main, ["--json", "calibrate", "--pass-length", "5", "--root", str(es8), "--target-far", "0.001", "--allow-weak"])
    res = json.loads(weak.stdout)
    assert weak.exit_code == 0 and res["weak"] and "WARNING" in weak.stderr
    assert res["false_accepts"] == 0 and res["per_comparison_far"] == pytest.approx(supportable)  # claims what it can


def test_calibrate_takes_tar_from_a_pairs_file_but_impostors_from_every_pair(tmp_path, es8):
    names = sorted(d.name for d in es8.iterdir())
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1\t4\n" + "".join(f"{n} 1 2\n" for n in names[:4])
                     + "".join(f"{a} 1 {b} 1\n" for a, b in zip(names[:4], names[4:])))
    res = cli("calibrate", "--pass-length", "5", "--root", str(es8), "--pairs", str(pairs), "--target-far", "0.05")
    assert res["genuine_pairs"] == 4 and res["impostors"] == 2800 and res["tar_pairs_file"] == str(pairs)


def test_calibrate_for_a_gallery_checks_fpir_on_galleries_of_that_size(es8):
    one = cli("calibrate", "--pass-length", "5", "--root", str(es8), "--target-far", "0.1", "--margin", "0")
    many = cli("calibrate", "--pass-length", "5", "--root", str(es8), "--target-far", "0.1", "--gallery-size", "5", "--margin", "0")
    assert many["per_comparison_far"] < one["per_comparison_far"] and many["threshold"] >= one["threshold"]
    check = many["fpir_check"]
    assert check["gallery_size"] == 5 and check["final"]["interval"][1] <= 0.1
    assert many["fpir"]["measured_at"] == 5 and many["fpir"]["nonmated_probes"] == 80


def test_calibrate_holdout_identities_reports_the_unseen_part(es8):
    res = cli("calibrate", "--pass-length", "5", "--root", str(es8), "--target-far", "0.05", "--holdout-identities", "0.5", "--seed", "1")
    h = res["holdout"]
    assert len(h["held_out"]) == 4 and set(h["held_out"]).isdisjoint(h["calibrated_on"]) and res["identities"] == 4
    assert h["impostor_pairs"] == 6 * 100 and h["far_interval"][0] <= h["far"] <= h["far_interval"][1]
    assert h["fpir"]["measured_at"] == 3  # 4 unseen identities: galleries of 3 plus a stranger


def test_eval_identify_reports_rank1_fnir_and_fpir_growth(tmp_path, es8):
    plot = tmp_path / "fpir.png"
    rep = cli("eval", "identify", "--root", str(es8), "--enroll", "3", "--plot", str(plot))
    assert rep["enrolled_identities"] == 4 and rep["mated_probes"] == 28 and rep["nonmated_probes"] == 40
    assert rep["rank1"] >= 0.85
    assert {r["target"] for r in rep["fnir_at_fpir"]} == {1e-2, 1e-3}
    ns = [r["N"] for r in rep["fpir_vs_n"]]
    assert ns == sorted(ns) and ns[-1] == 4
    fpir = [r["fpir"] for r in rep["fpir_vs_n"]]
    assert fpir == sorted(fpir)  # nested galleries: a bigger gallery never has fewer false matches
    assert plot.read_bytes()[:4] == b"\x89PNG"
    a, m = rep["at_threshold"], load_config().calibration
    assert a["threshold"] == m.threshold and a["far_claimed"] == m.far
    # 8 identities hold no gallery of 10 plus a stranger: measured at 7, and it says so
    assert a["gallery_size"] == 10 and a["fpir_gallery_size"] == 7 and "N=7" in a["note"]
    assert a["nonmated_probes"] == 80 and a["fpir_interval"][0] <= a["fpir"] <= a["fpir_interval"][1]
    assert a["fpir_claimed"] == pytest.approx(1 - (1 - m.far) ** 7)
    assert a["impostors"] == 2800 and a["far"] == pytest.approx(a["false_accepts"] / 2800)
    assert a["genuine"] == 8 * 7 and a["tar"] is not None and 0 <= a["tar"] <= 1


def test_eval_detect_on_the_dev_detection_set(tmp_path, faces_root):
    det = faces_root / "lab_dev" / "detection"
    truth = det / "ground_truth.json"
    rep = cli("eval", "detect", "--images", str(det / "images"), "--truth", str(truth), "--plot", str(tmp_path / "pr.png"))
    assert rep["faces"] > 0 and rep["detection_rate"] >= 0.9 and rep["miss_rate"] == pytest.approx(1 - rep["detection_rate"])
    assert rep["false_per_image"] <= 0.5 and rep["mean_latency_ms"] > 0
    assert yaml.safe_load(json.dumps(rep))  # plain JSON types only


def test_calibrate_says_when_the_photos_are_too_few_for_passes_of_a_tracks_looks(es8):
    # es8 has 10 photos per identity: 3 to enrol + a pass of matching.max_embeddings_per_track (10) cannot be drawn
    out = CliRunner().invoke(main, ["calibrate", "--root", str(es8), "--target-far", "0.02"])
    assert out.exit_code == 2 and "Traceback" not in out.output
    line = out.stderr.strip()
    assert "\n" not in line and "13 photos" in line and "--pass-length" in line
