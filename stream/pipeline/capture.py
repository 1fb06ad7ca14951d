"""Capture stage: one source (RTSP, file, webcam) -> Frame messages at the configured processing fps.

Live sources are read continuously by a reader thread that keeps only the newest frame (so the RTSP
buffer never fills and latency never grows); the stage samples it at ``fps`` and never blocks on a slow
detector (sends drop and count). Cameras that drop or never connect are retried with capped exponential
backoff, and online/offline status goes to the alert stage.
Recorded sources (``facewatch scan``) are read frame by frame with backpressure: every Nth frame, none lost.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from stream.pipeline.messages import CameraStatus, Frame
from stream.pipeline.stage import Stage, StageSpec

log = logging.getLogger(__name__)

OPEN_TIMEOUT_MS = 5000
READ_TIMEOUT_MS = 2000
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 10.0


class VideoError(RuntimeError):
    """A source that cannot be opened or read."""


def open_source(source: str | int) -> cv2.VideoCapture:
    """Open with open/read timeouts (without them a frozen RTSP server blocks each read for 30 s)."""
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        cap = cv2.VideoCapture(int(source))
    else:
        src = str(source)
        if src.startswith("file://"):
            src = src[len("file://"):]
        if src.startswith(("rtsp://", "rtsps://")):
            # TCP (no lost packets on loopback/LAN) and minimal probing: first frame in ~0.1 s instead of ~1-5 s
            os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp|analyzeduration;0|probesize;32")
        elif not src.startswith(("http://", "https://")) and not Path(src).is_file():
            raise VideoError(f"{src}: no such video file")
        cap = cv2.VideoCapture(
            src, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS]
        )
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"cannot open {source}")
    return cap


class LatestFrameReader(threading.Thread):
    """Reads a live source as fast as it delivers and keeps only the newest frame.

    Every frame is grabbed (decoded: the stream needs it), but only frames due at ``fps`` are retrieved,
    i.e. converted to BGR; the rest are skipped and counted, which saves about a third of the per-frame
    cost of a camera running faster than the processing fps.
    """

    def __init__(self, source: str | int, realtime_file: bool, on_status, fps: float) -> None:
        super().__init__(daemon=True)
        self.source, self.realtime_file, self.on_status = source, realtime_file, on_status
        self.period = 1.0 / fps
        self.lock = threading.Condition()
        self.frame: np.ndarray | None = None
        self.ts = 0.0
        self.count = 0
        self.skipped = 0
        self.stopping = False
        self.online = False

    def _set_online(self, online: bool, detail: str) -> None:
        if online != self.online:
            self.online = online
            self.on_status(online, detail)

    def run(self) -> None:
        backoff = BACKOFF_START_S
        first = True
        while not self.stopping:
            try:
                cap = open_source(self.source)
            except VideoError as exc:
                if first or self.online:
                    self.on_status(False, str(exc))
                first = False
                self._set_online(False, str(exc))
                time.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            first = False
            fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
            pace = 1.0 / fps if self.realtime_file and 0 < fps < 240 else 0.0
            next_t = due = time.monotonic()
            while not self.stopping:
                ok = cap.grab()
                if not ok and self.realtime_file:  # a replayed file loops
                    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    ok = cap.grab()
                if not ok:
                    break
                ts, now = time.time(), time.monotonic()
                backoff = BACKOFF_START_S
                self._set_online(True, "connected")
                if now >= due:
                    ok, frame = cap.retrieve()
                    if ok and frame is not None:
                        due = max(due + self.period, now)
                        with self.lock:
                            self.frame, self.ts, self.count = frame, ts, self.count + 1
                            self.lock.notify_all()
                else:
                    self.skipped += 1  # frame skipping down to the processing fps
                if pace:
                    next_t += pace
                    time.sleep(max(0.0, next_t - time.monotonic()))
            cap.release()
            if not self.stopping:
                self._set_online(False, "stream ended or read timed out; reconnecting")
                time.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)


class CaptureStage(Stage):
    kind = name = "capture"

    def __init__(self, spec: StageSpec) -> None:
        super().__init__(spec)
        self.camera = spec.options["camera"]
        self.name = f"capture:{self.camera['name']}"
        self.out = self.push(spec.endpoints["frames"])
        self.status_out = self.push(spec.endpoints["decisions"])

    def status(self, online: bool, detail: str, camera: str | None = None) -> None:
        camera = camera or self.camera["name"]
        self.metrics.inc("online" if online else "offline")
        self.metrics.counters["is_online"] = int(online)
        self.send(self.status_out, CameraStatus(camera, time.time(), online, detail), force=False)
        (log.info if online else log.warning)("camera %s %s: %s", camera, "online" if online else "offline", detail)

    def run(self) -> None:
        try:
            if self.live:
                self.run_live()
            else:
                self.run_recorded()
        finally:
            self.beat(force=True)
            self.close()

    def run_live(self) -> None:
        cam = self.camera
        reader = LatestFrameReader(cam["source"], bool(cam.get("replay")), self.status, float(cam.get("fps", 5.0)))
        reader.start()
        seq, last_count, missed = 0, 0, 0
        while not self.stopping:
            with reader.lock:
                reader.lock.wait_for(lambda: reader.count != last_count or self.stopping, timeout=0.5)
                frame, ts, count = reader.frame, reader.ts, reader.count
            self.metrics.counters["skipped"] = reader.skipped + missed
            self.beat()
            if frame is None or count == last_count:
                continue
            missed += count - last_count - 1  # retrieved while we were sending: superseded, never sent
            last_count = count
            seq += 1
            if self.send(self.out, Frame(cam["name"], seq, ts, image=frame)):
                self.metrics.inc("frames_out")
        reader.stopping = True
        # Let the reader leave OpenCV before the interpreter exits (else C++ aborts: "terminate called ...").
        reader.join(timeout=READ_TIMEOUT_MS / 1000 + 1.0)

    def run_recorded(self) -> None:
        """Every ``every``-th frame of each file, in video time, with backpressure; EOS after each file."""
        every = int(self.spec.options.get("every", 1))
        for name, path in self.spec.options["files"]:
            seq = 0
            try:
                cap = open_source(path)
            except VideoError as exc:
                self.status(False, f"{exc}", name)
                self.send(self.out, Frame(name, 0, time.time(), eos=True))
                continue
            fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
            idx = -1
            while not self.stopping:
                ok = cap.grab()
                if not ok:
                    break
                idx += 1
                if idx % every:
                    continue
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    self.metrics.inc("decode_errors")
                    continue
                seq += 1
                self.send(self.out, Frame(name, seq, time.time(), video_time=idx / fps, frame_index=idx, image=frame))
                self.metrics.inc("frames_out")
                self.beat()
            cap.release()
            if idx < 0:
                self.status(False, f"{path}: no decodable frame (corrupt or truncated video)", name)
            self.send(self.out, Frame(name, seq + 1, time.time(), eos=True, frame_index=idx + 1))
        while not self.stopping:  # stay alive (heartbeating) until the supervisor ends the run
            self.beat()
            time.sleep(0.2)
