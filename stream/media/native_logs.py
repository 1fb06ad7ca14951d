"""Keep OpenCV's and FFmpeg's own log lines out of the user's terminal.

They print straight to stderr from C++ ("backend is generally available but can't be used to capture by name",
"[h264 @ 0x...] error while decoding MB ...") and say nothing a user can act on: facewatch reports what matters
itself (a camera offline and why, a video partly decoded). With ``-vv`` they are left on for debugging.
The settings go into the environment too, so the stage processes spawned later inherit them.
"""
from __future__ import annotations

import os


def quiet_native_logs(debug: bool = False) -> None:
    level = {"OPENCV_LOG_LEVEL": "INFO", "OPENCV_FFMPEG_LOGLEVEL": "32"} if debug else \
        {"OPENCV_LOG_LEVEL": "SILENT", "OPENCV_FFMPEG_LOGLEVEL": "-8"}  # -8 = AV_LOG_QUIET
    for key, value in level.items():
        os.environ[key] = value
    try:
        import cv2

        levels = cv2.utils.logging
        levels.setLogLevel(levels.LOG_LEVEL_INFO if debug else levels.LOG_LEVEL_SILENT)
    except (ImportError, AttributeError):  # an OpenCV without the logging module: the env var still applies
        pass
