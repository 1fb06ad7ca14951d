"""Checks before anything starts: every problem ``run``, ``scan`` or ``identify`` would meet later, found now.

Why: a pipeline that starts and then crash-loops on an unwritable snapshot directory, or runs happily against a
misspelled (so empty) gallery, looks like protection while nothing can alert. Each check *does* the thing it
checks (opens the gallery, creates and removes a file in each directory it will write, binds the metrics port),
so a pass means the operation will work. Each problem is one line naming the config field or path; the caller
refuses to start when there is any.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import sqlite3
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from stream.config import CameraConfig, Config
from stream.media.files import regular_file_problem
from stream.store.events import EventStore
from stream.store.gallery import Gallery, GalleryError


def gallery_problems(directory: Path, field: str, *, empty_ok: bool, missing_ok: bool = False,
                     gallery_args: dict | None = None) -> list[str]:
    """The gallery exists, opens (its index is rebuilt in memory when missing or stale) and, unless
    ``empty_ok``, holds at least one person."""
    if not directory.exists():
        if missing_ok:  # run alerting on unknown faces: the match stage opens the gallery once someone is enrolled
            return writable_dir_problems(directory.parent, field)
        return [f"{field}: no gallery at {directory} (enroll someone first: facewatch gallery enroll NAME PHOTO...)"]
    try:
        gal = Gallery(directory, readonly=True, **(gallery_args or {}))
    except (GalleryError, sqlite3.Error, OSError) as exc:
        return [f"{field}: {exc}"]
    try:
        if not empty_ok and len(gal.persons()) == 0:
            return [f"{field}: the gallery at {directory} is empty, so no one could ever be recognised "
                    "(enroll someone, alert on unknown faces, or pass --allow-empty-gallery)"]
    finally:
        gal.close()
    return []


def rule_problems(cfg: Config) -> list[str]:
    """The track rule needs a threshold calibrated for it: a per-photo threshold would break its promise."""
    if cfg.recognition.rule == "track" and cfg.calibration.track_threshold is None:
        return ["matching.calibration: no track_threshold (calibrated before track decisions); run facewatch calibrate "
                "--write, or set recognition.rule: votes"]
    return []


def writable_dir_problems(directory: Path, field: str) -> list[str]:
    """Create ``directory`` if needed and a file in it, then remove the file."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".facewatch-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return [f"{field}: cannot write in {directory} ({exc.strerror or exc})"]
    return []


def appendable_file_problems(path: Path, field: str) -> list[str]:
    """Open ``path`` for appending (creating it 0600 if new), the way the sink will."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600))
    except OSError as exc:
        return [f"{field}: cannot append to {path} ({exc.strerror or exc})"]
    return []


def event_store_problems(path: Path, field: str) -> list[str]:
    try:
        EventStore(path).close()
    except (sqlite3.Error, OSError, ValueError) as exc:
        return [f"{field}: cannot use the event store {path} ({exc})"]
    return []


def port_problems(host: str, port: int, field: str) -> list[str]:
    """Bind and release ``host:port`` (port 0 = any free port: nothing to check)."""
    if port == 0:
        return []
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as exc:
        return [f"{field}: cannot listen on {host}:{port} ({exc.strerror or exc}); is another facewatch running?"]
    return []


def camera_problems(i: int, cam: CameraConfig) -> list[str]:
    """The source's syntax (and, for a file, that it is a readable regular file): not whether the camera is up,
    which is the capture stage's job (it retries and reports offline)."""
    field = f"cameras.{i}.source"
    src = cam.source
    if isinstance(src, int) or src.isdigit():
        return []
    if src.startswith(("rtsp://", "rtsps://", "http://", "https://")):
        try:
            parts = urlsplit(src)
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            return [f"{field}: {src!r} is not a valid URL ({exc})"]
        if not parts.hostname:
            return [f"{field}: {src!r} has no host"]
        return []
    path = Path(src[len("file://"):] if src.startswith("file://") else src)
    problem = regular_file_problem(path)
    return [f"{field}: {path}: {problem}"] if problem else []


def run_problems(cfg: Config, *, allow_empty_gallery: bool = False) -> list[str]:
    """Everything ``facewatch run`` needs, checked by doing it."""
    cams = [(i, c) for i, c in enumerate(cfg.cameras) if c.enabled]
    if not cams:
        return ["cameras: no enabled camera in the config (cameras: [...])"]
    out: list[str] = []
    for i, cam in cams:
        out += camera_problems(i, cam)
    unknown_only = all(c.alert_on in ("unknown", "both") for _, c in cams)
    out += gallery_problems(cfg.resolve(cfg.matching.gallery), "matching.gallery", empty_ok=allow_empty_gallery or unknown_only,
                            missing_ok=allow_empty_gallery or unknown_only, gallery_args=cfg.gallery_args())
    out += rule_problems(cfg)
    out += writable_dir_problems(cfg.data_dir, "data_dir")
    out += writable_dir_problems(cfg.resolve(cfg.alerts.snapshots), "alerts.snapshots")
    out += event_store_problems(cfg.resolve(cfg.alerts.store), "alerts.store")
    if cfg.alerts.sinks.jsonl is not None:
        out += appendable_file_problems(cfg.resolve(cfg.alerts.sinks.jsonl), "alerts.sinks.jsonl")
    pub = cfg.alerts.sinks.zmq_pub
    if pub and pub.startswith("tcp://"):
        host, _, port = pub[len("tcp://"):].rpartition(":")
        if not port.isdigit():
            out.append(f"alerts.sinks.zmq_pub: {pub!r} needs tcp://HOST:PORT")
        else:
            out += port_problems("0.0.0.0" if host in ("*", "") else host, int(port), "alerts.sinks.zmq_pub")
    if cfg.metrics.enabled:
        out += port_problems(cfg.metrics.host, cfg.metrics.port, "metrics.port")
    out += writable_dir_problems(cfg.resolve(cfg.live.dir), "live.dir")
    mqtt = cfg.alerts.sinks.mqtt
    if mqtt is not None and mqtt.tls is not None:  # the broker itself may be down at start: the outbox waits for it
        for name in ("ca_certs", "certfile", "keyfile"):
            f = getattr(mqtt.tls, name)
            problem = regular_file_problem(cfg.resolve(f)) if f is not None else None
            if problem:
                out.append(f"alerts.sinks.mqtt.tls.{name}: {f}: {problem}")
    if mqtt is not None and mqtt.password_env and mqtt.password_env not in os.environ:
        out.append(f"alerts.sinks.mqtt.password_env: the environment variable {mqtt.password_env} is not set")
    if cfg.api.enabled:
        out += api_problems(cfg)
    return out


def store_problems(cfg: Config) -> list[str]:
    """What writing events needs (``scan --store``): the snapshot directory and the event store."""
    return (writable_dir_problems(cfg.resolve(cfg.alerts.snapshots), "alerts.snapshots")
            + event_store_problems(cfg.resolve(cfg.alerts.store), "alerts.store"))


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost: reachable from this machine only."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def api_problems(cfg: Config, host: str | None = None, port: int | None = None) -> list[str]:
    """What the HTTP server needs: its port, and a token whenever it listens beyond this machine."""
    host = cfg.api.host if host is None else host
    port = cfg.api.port if port is None else port
    out = port_problems(host, port, "api.port")
    if not is_loopback(host) and not cfg.api.effective_token():
        out.append(f"api.host: {host} is reachable from other machines; set an API token (api.token, or the "
                   f"{cfg.api.token_env} environment variable) or bind 127.0.0.1")
    return out


def gallery_only_problems(cfg: Config, gallery: Path, *, allow_empty_gallery: bool = False) -> list[str]:
    """What ``scan`` and ``identify`` need before they start: a usable gallery."""
    unknown_only = bool(cfg.cameras) and all(c.alert_on in ("unknown", "both") for c in cfg.cameras)
    return gallery_problems(gallery, "gallery", empty_ok=allow_empty_gallery or unknown_only,
                            gallery_args=cfg.gallery_args())
