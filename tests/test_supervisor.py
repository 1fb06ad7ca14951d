"""The supervisor with real stage processes: a crashing stage is restarted with its cause said, its counters
carry over restarts, and a stage that keeps failing fails the run instead of letting it look healthy."""
from __future__ import annotations

import logging
import time

from stream.config import load_config
from stream.pipeline.stage import Stage
from stream.pipeline.supervisor import Supervisor, exit_cause, run_until


class CrashingStage(Stage):
    """Counts, then crashes with a message of its own after ~0.6 s (stands in for a broken alert stage)."""

    kind = name = "alert"

    def loop_once(self) -> None:
        time.sleep(0.05)
        self.metrics.inc("frames_in")
        if time.monotonic() - self._born > 0.6:
            raise RuntimeError("disk on fire")

    def run(self) -> None:
        self._born = time.monotonic()
        super().run()


def small_config(tmp_path, **supervisor):
    return load_config(overrides={"data_dir": str(tmp_path), "cameras": [], "metrics": {"enabled": False},
                                  "engines": {"engine": "onnxruntime", "threads": 1},
                                  "supervisor": {"restart_backoff_s": 0.05, **supervisor}})


def test_a_stage_that_keeps_crashing_fails_the_run_with_its_cause(tmp_path, caplog, fw_home):
    cfg = small_config(tmp_path, max_restarts=3, restart_window_s=120)
    sup = Supervisor(cfg, live=True, final=CrashingStage)
    seen: list[float] = []

    def tick(s: Supervisor) -> None:
        child = next(c for c in s.children if c.spec.kind == "alert")
        if "frames_in" in child.metrics:
            seen.append(child.metrics["frames_in"])

    with caplog.at_level(logging.WARNING, logger="stream.pipeline.supervisor"):
        ok = run_until(sup, until=lambda: False, timeout_s=90, on_tick=tick)
    assert not ok
    assert sup.failed and "alert" in sup.failed and "max_restarts 3" in sup.failed and "disk on fire" in sup.failed
    restarts = [r.getMessage() for r in caplog.records if "restarting" in r.getMessage()]
    assert len(restarts) == 3 and all("RuntimeError: disk on fire" in m for m in restarts), restarts
    assert "pipeline DEGRADED" in caplog.text
    # counters carry over restarts: never going down, and more than one incarnation's worth in the end
    assert seen and all(b >= a for a, b in zip(seen, seen[1:])), seen
    assert max(seen) > 14  # one incarnation counts ~12 before it crashes


def test_exit_causes_are_named():
    assert exit_cause(-9) == "was killed by SIGKILL"
    assert exit_cause(1) == "exited with status 1"
    assert exit_cause(None) == "stopped heartbeating"


class EnvStage(Stage):
    """Says in its counters what ``FW_TEST_STAGE_ENV`` is in its own process."""

    kind = name = "alert"

    def loop_once(self) -> None:
        import os

        time.sleep(0.05)
        self.metrics.inc("env_" + os.environ.get("FW_TEST_STAGE_ENV", "unset"))


def test_a_stage_sees_the_environment_of_its_start_not_the_fork_servers(tmp_path, monkeypatch, fw_home):
    """Stages are forked from a fork server started with the first stage; one started later must still see the
    supervisor's environment as it is then (a secret or FACEWATCH_HOME set in between), as a spawned one would."""
    seen: dict[str, set] = {}
    for value in ("first", "second"):
        monkeypatch.setenv("FW_TEST_STAGE_ENV", value)
        sup = Supervisor(small_config(tmp_path / value), live=True, final=EnvStage)

        def reported(s: Supervisor, value: str = value) -> bool:
            child = next(c for c in s.children if c.spec.kind == "alert")
            seen[value] = {k for k in child.metrics if k.startswith("env_")}
            return bool(seen[value])

        try:
            sup.start()
            end = time.monotonic() + 60
            while time.monotonic() < end and not reported(sup):
                sup.poll(0.2)
        finally:
            sup.stop()
    assert seen == {"first": {"env_first"}, "second": {"env_second"}}
