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


def test_calibrate_writes_a_threshold_the_config_loads(tmp_path, small_pairs, wild):
    cfg = tmp_path / "my.yaml"
    cfg.write_text("cameras: []\n")
    res = cli("calibrate", "--pairs", str(small_pairs), "--root", str(wild / "ids"), "--target-far", "0.05",
              "--write", str(cfg))
    loaded = load_config(cfg)
    assert loaded.matching.threshold == pytest.approx(res["threshold"])
    assert loaded.matching.threshold_far == pytest.approx(0.05)
    assert "100 different pairs" in loaded.matching.threshold_source
    assert res["achieved_far"] <= 0.05
    # a FAR the data cannot resolve is refused, and the config is left as it was
    before = cfg.read_text()
    out = CliRunner().invoke(main, ["calibrate", "--pairs", str(small_pairs), "--root", str(wild / "ids"),
                                    "--target-far", "0.001", "--write", str(cfg)])
    assert out.exit_code == 2 and "cannot resolve" in out.stderr and cfg.read_text() == before


def test_calibrate_for_a_larger_gallery_picks_a_higher_threshold(small_pairs, wild):
    one = cli("calibrate", "--pairs", str(small_pairs), "--root", str(wild / "ids"), "--target-far", "0.1")
    many = cli("calibrate", "--pairs", str(small_pairs), "--root", str(wild / "ids"), "--target-far", "0.1",
               "--gallery-size", "5")
    assert many["per_comparison_far"] < one["per_comparison_far"]
    assert many["threshold"] >= one["threshold"]


def test_eval_identify_reports_rank1_fnir_and_fpir_growth(tmp_path, wild):
    root = tmp_path / "ids"  # 8 identities x 10 photos, linked (never copied) from the shared data
    for d in sorted(wild.glob("ids/es_*"))[:8]:
        (root / d.name).mkdir(parents=True)
        for i in range(1, 11):
            os.symlink(d / f"{i}.jpg", root / d.name / f"{i}.jpg")
    plot = tmp_path / "fpir.png"
    rep = cli("eval", "identify", "--root", str(root), "--enroll", "3", "--plot", str(plot))
    assert rep["enrolled_identities"] == 4 and rep["mated_probes"] == 28 and rep["nonmated_probes"] == 40
    assert rep["rank1"] >= 0.85
    assert {r["target"] for r in rep["fnir_at_fpir"]} == {1e-2, 1e-3}
    ns = [r["N"] for r in rep["fpir_vs_n"]]
    assert ns == sorted(ns) and ns[-1] == 4
    fpir = [r["fpir"] for r in rep["fpir_vs_n"]]
    assert fpir == sorted(fpir)  # nested galleries: a bigger gallery never has fewer false matches
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_eval_detect_on_the_dev_detection_set(tmp_path, faces_root):
    det = faces_root / "lab_dev" / "detection"
    truth = det / "ground_truth.json"
    rep = cli("eval", "detect", "--images", str(det / "images"), "--truth", str(truth), "--plot", str(tmp_path / "pr.png"))
    assert rep["faces"] > 0 and rep["detection_rate"] >= 0.9 and rep["miss_rate"] == pytest.approx(1 - rep["detection_rate"])
    assert rep["false_per_image"] <= 0.5 and rep["mean_latency_ms"] > 0
    assert yaml.safe_load(json.dumps(rep))  # plain JSON types only
