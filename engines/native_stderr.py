"""Drop a native library's chatter from file descriptor 2 around its calls, and keep everything else.

Why: MediaPipe (LiteRT, glog/absl) writes 9-11 lines when a detector is created and, with the full-range model, a
"Sparsity tensors may not yet be fully supported" warning on every call, straight to fd 2 from C++. No environment
variable silences them (``../shared/models/MODELS.md``). Redirecting fd 2 to ``/dev/null`` around the call would
also swallow whatever another thread of the process writes in that window (a log line of ours), so fd 2 goes to a
pipe instead: after the call every captured line that is not native chatter is written to the real stderr.

Limits: a window is one native call (milliseconds); another thread writing over 64 KB to stderr inside it would
block until the call ends. Native errors (glog ``E``/``F`` lines) are kept.
"""
from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: glog/absl INFO and WARNING lines, LiteRT's "INFO: [file.cc:12] ..." lines and the "Logging before InitGoogle()"
#: notice. Our own log lines start with a timestamp, so they never match.
NATIVE_CHATTER = re.compile(rb"^(?:INFO: |WARNING: |[IW]\d{4} )")


class NativeStderrFilter:
    """A context manager: ``with filt(): native_call()`` keeps fd 2 clean of ``drop`` lines during the call."""

    def __init__(self, drop: re.Pattern[bytes] = NATIVE_CHATTER) -> None:
        self.drop = drop
        self._lock = threading.Lock()
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        self.dropped = 0  # lines dropped so far (tests, -vv diagnostics)

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            try:
                sys.stderr.flush()
            except (AttributeError, ValueError, OSError):
                pass
            saved = os.dup(2)
            os.dup2(self._w, 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                self._forward()

    def _forward(self) -> None:
        data = bytearray()
        while True:
            try:
                chunk = os.read(self._r, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
        if not data:
            return
        lines = bytes(data).splitlines(keepends=True)
        kept = [ln for ln in lines if not self.drop.match(ln)]
        self.dropped += len(lines) - len(kept)
        if kept:
            os.write(2, b"".join(kept))

    def close(self) -> None:
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
