#!/usr/bin/python3
"""A real RTSP server for tests and demos: GStreamer's RTSP server looping a raw H.264 (Annex-B) file.

Runs under the system Python (python3-gi is a Debian package, not in the venv):
    /usr/bin/python3 tools/rtsp_server.py --file clip.h264 --port 8554 --path /cam --fps 25
Prints ``READY rtsp://127.0.0.1:PORT/PATH`` once it serves. Binds 127.0.0.1 only.
"""
import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", required=True)
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--path", default="/cam")
    ap.add_argument("--fps", type=int, default=25)
    a = ap.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(a.port))
    factory = GstRtspServer.RTSPMediaFactory()
    # multifilesrc loops the file; h264parse splits access units; the identity/queue keep a live pace and
    # timestamps so clients see a live camera.
    launch = (f'( multifilesrc location="{a.file}" loop=true caps="video/x-h264,stream-format=byte-stream,framerate={a.fps}/1" '
              f"! h264parse ! video/x-h264,framerate={a.fps}/1 ! identity sync=true "
              f"! rtph264pay name=pay0 pt=96 config-interval=1 )")
    factory.set_launch(launch)
    factory.set_shared(True)
    server.get_mount_points().add_factory(a.path, factory)
    if server.attach(None) == 0:
        print("ERROR cannot bind", flush=True)
        sys.exit(1)
    print(f"READY rtsp://127.0.0.1:{a.port}{a.path}", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
