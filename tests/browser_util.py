"""Helpers for the browser tests: facewatch server processes, screenshots, image checks in the page."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FACEWATCH = [sys.executable, "-m", "stream.cli"]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO / "docs" / "screenshots"


class Proc:
    """A facewatch command as a subprocess, its stdout+stderr in a log file next to its config."""

    def __init__(self, args: list[str], log: Path, env: dict | None = None) -> None:
        self.log = log
        self.fh = open(log, "w")
        self.proc = subprocess.Popen(FACEWATCH + args, cwd=REPO, stdout=self.fh, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_serving(self, timeout: float = 90.0) -> str:
        """The base URL from the server's ``facewatch: serving on http://HOST:PORT`` line (a wildcard bind is
        reached on 127.0.0.1)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = re.search(r"facewatch: serving on (http://\S+)", self.text())
            if m:
                return re.sub(r"//(0\.0\.0\.0|\[::\])", "//127.0.0.1", m.group(1)).rstrip("/")
            if self.proc.poll() is not None:
                raise AssertionError(f"facewatch exited with {self.proc.returncode} before serving:\n{self.text()[-3000:]}")
            time.sleep(0.2)
        raise AssertionError(f"no 'serving on' line after {timeout:.0f} s:\n{self.text()[-3000:]}")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.fh.close()
        return self.proc.returncode


def screenshot(page, name: str, tmp: Path) -> Path:
    """docs/screenshots/NAME.png when FACEWATCH_SCREENSHOTS=1, else under tmp."""
    d = SCREENSHOTS if os.environ.get("FACEWATCH_SCREENSHOTS") == "1" else tmp
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def wait_image_loaded(page, locator, timeout_ms: float = 20000) -> int:
    """Wait until the <img> has decoded a real image; its naturalWidth."""
    handle = locator.element_handle(timeout=timeout_ms)
    page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=handle, timeout=timeout_ms)
    return handle.evaluate("el => el.naturalWidth")
