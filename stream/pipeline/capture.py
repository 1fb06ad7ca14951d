"""Capture stage: one source (RTSP, file, webcam) -> Frame messages at the configured processing fps.

Live sources are read continuously by a reader thread that keeps only the newest frame (so the RTSP
buffer never fills and latency never grows); the stage samples it at ``fps`` and never blocks on a slow
detector (sends drop and count). Cameras that drop or never connect are retried with capped exponential
backoff, and online/offline status goes to the alert stage.
Recorded sources (``facewatch scan``) are read frame by frame with backpressure: every Nth frame, none lost.
Each file is checked before it is opened (a FIFO or a device would block the reader forever), and what was
read of it (frames expected, decoded, processed, decode errors, or why it could not be read) goes to the last
stage as a ``SourceSummary``, so a truncated file is reported as partial instead of as a success.
"""
from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from stream.media.files import regular_file_problem
from stream.pipeline.messages import CameraStatus, Frame, SourceSummary
from stream.store.live import LiveDir
from stream.pipeline.stage import Stage, StageSpec

log = logging.getLogger(__name__)

OPEN_TIMEOUT_MS = 5000
READ_TIMEOUT_MS = 2000
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 10.0


class VideoError(RuntimeError):
    """A source that cannot be opened or read."""


def file_problem(path: str) -> str | None:
    """Why ``path`` cannot be read as a recorded video, found without opening it (see ``media.files``)."""
    problem = regular_file_problem(path)
    return f"{problem}: not opened" if problem and "not a regular file" in problem else problem


def open_recorded(path: str) -> cv2.VideoCapture:
    """A recorded file opened with the open/read timeouts, after ``file_problem``; ``VideoError`` with the reason."""
    problem = file_problem(path)
    if problem:
        raise VideoError(problem)
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS,
                                                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS])
    if not cap.isOpened():
        cap.release()
        raise VideoError("cannot be opened as a video "
                         "(not a video, an unsupported format, or cut off before its index)")
    return cap


def frames_expected(cap: cv2.VideoCapture) -> int | None:
    """The container's frame count (OpenCV falls back to duration x fps itself); None when it does not say."""
    n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    return int(n) if math.isfinite(n) and n > 0 else None


def probe_frames(path: str) -> int | None:
    """``frames_expected`` of a file, None when it says nothing or cannot be read (never blocks: see
    ``file_problem``)."""
    try:
        cap = open_recorded(path)
    except VideoError:
        return None
    try:
        return frames_expected(cap)
    finally:
        cap.release()


@dataclass
class FileRead:
    """What was read of one recorded file: the fields of its ``SourceSummary``."""

    frames_expected: int | None = None
    frames_decoded: int = 0
    frames_processed: int = 0
    decode_errors: int = 0
    failure: str | None = None


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
        elif not src.startswith(("http://", "https://")) and (problem := file_problem(src)):
            raise VideoError(f"{src}: {problem}")
        cap = cv2.VideoCapture(
            src, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS]
        )
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"cannot open {redact(str(source))}: {why_not_open(source)}")
    return cap


def redact(source: str) -> str:
    """The source as it may appear in a log or a status line: a URL's password replaced by ``***``."""
    try:
        parts = urlsplit(source)
    except ValueError:
        return source
    if parts.password is None:
        return source
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def why_not_open(source: str | int) -> str:
    """A reason an operator can act on, since OpenCV only says "not opened": for a network camera, whether its
    host and port answer at all (DNS, refused, timed out) or answered but gave no stream (path, credentials,
    codec); for a webcam, whether the device exists."""
    if isinstance(source, int) or str(source).isdigit():
        dev = Path(f"/dev/video{int(source)}")
        return "no such device " + str(dev) if not dev.exists() else f"{dev} exists but gave no video (in use?)"
    try:
        parts = urlsplit(str(source))
        host, port = parts.hostname, parts.port or {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}.get(parts.scheme)
    except ValueError as exc:
        return f"bad URL ({exc})"
    if not host or not port:
        return "the file could not be decoded (not a video, or a codec this OpenCV lacks)"
    try:
        socket.create_connection((host, port), timeout=2.0).close()
    except socket.gaierror:
        return f"host {host!r} not found (DNS)"
    except socket.timeout:
        return f"{host}:{port} did not answer within 2 s (host down, firewall, wrong port?)"
    except OSError as exc:
        return f"{host}:{port} refused or unreachable ({exc.strerror or exc})"
    return (f"{host}:{port} answered but gave no video stream within {OPEN_TIMEOUT_MS // 1000} s "
            "(wrong path or credentials, or an unsupported codec?)")


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
        self.source_t: float | None = None  # the stream position of ``frame`` by the source's clock (s)
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
                        pos = cap.get(cv2.CAP_PROP_POS_MSEC)  # back to ~0 when a replayed file loops
                        with self.lock:
                            self.frame, self.ts, self.count = frame, ts, self.count + 1
                            self.source_t = pos / 1000 if math.isfinite(pos) else None
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
        live = LiveDir(self.cfg.resolve(self.cfg.live.dir))
        live.ensure()
        seq, last_count, missed, shown_at = 0, 0, 0, 0.0
        while not self.stopping:
            with reader.lock:
                reader.lock.wait_for(lambda: reader.count != last_count or self.stopping, timeout=0.5)
                frame, ts, count, source_t = reader.frame, reader.ts, reader.count, reader.source_t
            self.metrics.counters["skipped"] = reader.skipped + missed
            self.beat()
            if frame is None or count == last_count:
                continue
            missed += count - last_count - 1  # retrieved while we were sending: superseded, never sent
            last_count = count
            seq += 1
            if self.send(self.out, Frame(cam["name"], seq, ts, image=frame, source_time=source_t)):
                self.metrics.inc("frames_out")
            if ts - shown_at >= self.cfg.live.frame_interval_s:  # the latest frame, for the web UI's camera grid
                shown_at = ts
                try:
                    live.write_frame(cam["name"], frame)
                except OSError as exc:
                    log.debug("latest frame not written: %s", exc)
        reader.stopping = True
        # Let the reader leave OpenCV before the interpreter exits (else C++ aborts: "terminate called ...").
        reader.join(timeout=READ_TIMEOUT_MS / 1000 + 1.0)

    def run_recorded(self) -> None:
        """Every ``every``-th frame of each file, in video time, with backpressure; then the file's
        ``SourceSummary`` (straight to the last stage) and its end-of-stream (through the pipeline)."""
        every = int(self.spec.options.get("every", 1))
        for name, path in self.spec.options["files"]:
            read = self.read_file(name, str(path), every)
            if read.failure:
                log.info("%s: %s", path, read.failure)  # the report says it too
            self.send(self.status_out, SourceSummary(name, time.time(), **asdict(read)))
            self.send(self.out, Frame(name, read.frames_processed + 1, time.time(), eos=True,
                                      frame_index=read.frames_decoded))
        while not self.stopping:  # stay alive (heartbeating) until the supervisor ends the run
            self.beat()
            time.sleep(0.2)

    def read_file(self, name: str, path: str, every: int) -> FileRead:
        """Send the file's frames; count what was expected, decoded, sent and failed to decode."""
        try:
            cap = open_recorded(path)
        except VideoError as exc:
            return FileRead(failure=str(exc))
        read = FileRead(frames_expected=frames_expected(cap))
        fps = cap.get(cv2.CAP_PROP_FPS)
        fps = fps if math.isfinite(fps) and 0 < fps < 1000 else 25.0
        idx = -1
        try:
            while not self.stopping:
                if not cap.grab():  # end of file, or FFmpeg gave up on the rest of it
                    break
                idx += 1
                if idx % every:
                    read.frames_decoded += 1  # grab() decodes; only the frames sent are converted
                    continue
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    read.decode_errors += 1
                    self.metrics.inc("decode_errors")
                    continue
                read.frames_decoded += 1
                read.frames_processed += 1
                self.send(self.out, Frame(name, read.frames_processed, time.time(), video_time=idx / fps,
                                          frame_index=idx, image=frame))
                self.metrics.inc("frames_out")
                self.beat()
        finally:
            cap.release()
        return read
