"""A camera that cannot be opened is reported with a reason an operator can act on, and never with its password."""
from __future__ import annotations

import socket

import pytest

from stream.pipeline.capture import VideoError, open_source, redact


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_camera_says_refused_and_hides_the_password():
    url = f"rtsp://admin:hunter2@127.0.0.1:{free_port()}/stream1"
    with pytest.raises(VideoError) as info:
        open_source(url)
    msg = str(info.value)
    assert "hunter2" not in msg and "admin:***@127.0.0.1" in msg and "refused" in msg


def test_unknown_host_says_dns():
    with pytest.raises(VideoError, match="not found"):
        open_source("rtsp://camera.invalid/stream1")


def test_server_that_answers_without_video_says_so():
    """Something listens on the port but speaks no RTSP: reachable, no stream (path, credentials or codec)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    try:
        with pytest.raises(VideoError, match="answered but gave no video"):
            open_source(f"rtsp://127.0.0.1:{srv.getsockname()[1]}/x")
    finally:
        srv.close()


def test_missing_webcam_names_the_device():
    with pytest.raises(VideoError, match="/dev/video57"):
        open_source(57)


@pytest.mark.parametrize("url, shown", [
    ("rtsp://u:p@h:5/x?y=1", "rtsp://u:***@h:5/x?y=1"),
    ("rtsp://h/x", "rtsp://h/x"),
    ("/videos/a.mp4", "/videos/a.mp4"),
])
def test_redact(url, shown):
    assert redact(url) == shown
