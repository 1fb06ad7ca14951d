"""The pydantic model is the one source of defaults: the shipped YAML and the README table are generated from it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stream.config import ENDPOINTS, Config, ConfigError, SocketsConfig, load_config
from stream.config_docs import README_END, README_START, default_yaml, readme_with_table, reference_table

REPO = Path(__file__).resolve().parent.parent


def test_default_yaml_is_generated_from_the_model_and_current():
    shipped = (REPO / "config" / "default.yaml").read_text()
    assert shipped == default_yaml(), "config/default.yaml is stale: run python tools/gen_config_docs.py"
    # and it says exactly what the model says
    assert load_config(REPO / "config" / "default.yaml") == Config()
    assert yaml.safe_load(shipped) == Config().model_dump(mode="json")


def test_readme_config_table_is_current():
    readme = (REPO / "README.md").read_text()
    assert README_START in readme and README_END in readme
    assert readme_with_table(readme) == readme, "README's configuration table is stale: run python tools/gen_config_docs.py"
    table = reference_table()
    for key in ("detector.nms_threshold", "matching.calibration.track_threshold", "recognition.profile", "cameras[].alert_on", "alerts.sinks.webhook.url"):
        assert f"| `{key}` |" in table


def test_the_check_command_fails_on_a_stale_file(tmp_path):
    """The generator's --check is what a contributor runs; it must notice drift."""
    repo = tmp_path / "repo"
    (repo / "config").mkdir(parents=True)
    (repo / "tools").mkdir()
    (repo / "tools" / "gen_config_docs.py").write_text((REPO / "tools" / "gen_config_docs.py").read_text())
    (repo / "README.md").write_text(f"x\n{README_START}\nold\n{README_END}\n")
    (repo / "config" / "default.yaml").write_text(default_yaml())
    env = {"PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, str(repo / "tools" / "gen_config_docs.py"), "--check"], capture_output=True,
                         text=True, env=env)
    assert res.returncode == 1 and "README.md is stale" in res.stderr
    subprocess.run([sys.executable, str(repo / "tools" / "gen_config_docs.py")], check=True, capture_output=True, env=env)
    res = subprocess.run([sys.executable, str(repo / "tools" / "gen_config_docs.py"), "--check"], capture_output=True,
                         text=True, env=env)
    assert res.returncode == 0, res.stderr


def test_defaults_need_no_file(tmp_path, monkeypatch):
    """A wheel has no config/ directory: loading with no file must give the model's defaults."""
    monkeypatch.chdir(tmp_path)
    cfg = load_config()
    assert cfg.threshold == Config().threshold and cfg.calibration.profile == "fast" and cfg.detector.nms_threshold == 0.4


def test_one_list_of_endpoints():
    assert ENDPOINTS == ("frames", "faces", "embeddings", "decisions", "control")
    assert set(ENDPOINTS) | {"run_dir"} == set(SocketsConfig.model_fields)


@pytest.mark.parametrize("text, where", [
    ("detector: {nms_threshold: 1.5}\n", "detector.nms_threshold"),
    ("engines: {engine: cuda}\n", "engines.engine"),
    ("sockets: {frames: 'http://x'}\n", "sockets.frames"),
    ("matching: {votes: 0}\n", "matching.votes"),
])
def test_bad_values_name_the_field(tmp_path, text, where):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        load_config(p)


def test_cli_and_pipeline_build_the_detector_from_the_same_config(fw_home, tmp_path):
    """NMS and score threshold come from ``detector`` for the photo analyzer and the pipeline stage alike."""
    from stream.loaders import photo_analyzer, pipeline_detector

    p = tmp_path / "c.yaml"
    p.write_text("engines: {engine: onnxruntime, threads: 1}\ndetector: {score_threshold: 0.77, nms_threshold: 0.25}\n")
    cfg = load_config(p)
    for det in (photo_analyzer(cfg).detector, pipeline_detector(cfg)):
        assert (det.score_threshold, det.nms_threshold, det.max_side) == (0.77, 0.25, 1920)


def test_example_config_loads():
    """config/example.yaml is what users copy: it must validate against the model (it once carried a stale key)."""
    from pathlib import Path

    from stream.config import load_config

    cfg = load_config(Path(__file__).resolve().parent.parent / "config" / "example.yaml")
    assert cfg.motion_mask("entrance") and cfg.alerts.delivery.max_backoff_s == 60
