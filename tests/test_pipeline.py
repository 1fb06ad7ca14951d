"""The streaming pipeline with real processes, real ZeroMQ sockets, a real RTSP server, a real HTTP receiver."""
from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest
import yaml
from click.testing import CliRunner

from stream.cli import main
from stream.media.clips import Appearance, astronaut_head, render_clip
from stream.store.events import EventStore

REPO = Path(__file__).resolve().parent.parent
FACEWATCH = [sys.executable, "-m", "stream.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path: Path, data_dir: Path, gallery: Path, cameras: list, **extra) -> Path:
    cfg = {"data_dir": str(data_dir), "engines": {"engine": "onnxruntime", "threads": 1},
           "matching": {"gallery": str(gallery)}, "cameras": cameras,
           "metrics": {"enabled": True, "port": free_port(), "log_interval_s": 2},
           "alerts": {"cooldown_s": 0}, "supervisor": {"heartbeat_timeout_s": 10}}
    for k, v in extra.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    path.write_text(yaml.safe_dump(cfg))
    return path


class Run:
    """``facewatch -v run -c cfg`` as a real subprocess; stderr parsed for stage pids."""

    def __init__(self, cfg: Path) -> None:
        self.log = cfg.with_suffix(".log")
        self.fh = open(self.log, "w")
        self.proc = subprocess.Popen(FACEWATCH + ["-v", "run", "-c", str(cfg)], cwd=REPO, stdout=self.fh,
                                     stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def text(self) -> str:
        return self.log.read_text()

    def pid(self, stage: str) -> int:
        found = re.findall(rf"started stage {re.escape(stage)} pid (\d+)", self.text())
        return int(found[-1])

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.fh.close()
        return self.proc.returncode


def children_of(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid and stat[0] != "Z":
                out.append(int(p.name))
    return out


def descendants_of(pid: int) -> list[int]:
    """Every live process under ``pid``: the stages are forked by a fork server that is itself a child."""
    out, todo = [], [pid]
    while todo:
        kids = children_of(todo.pop())
        out += kids
        todo += kids
    return out


def wait_for(cond, timeout: float, what: str, step: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} at {time.time():.1f}")


def events(store: Path, since: float = 0.0) -> list[dict]:
    if not store.exists():
        return []
    es = EventStore(store)
    try:
        return [e.model_dump() for e in es.events(since=since)]
    finally:
        es.close()


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


# ----------------------------------------------------------------------------- config
def test_bad_config_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"cameras": [{"name": "cam", "source": "rtsp://x/y", "fps": -3}]}))
    res = CliRunner().invoke(main, ["-c", str(bad), "run"])
    assert res.exit_code == 2
    assert "cameras.0.fps" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    bad.write_text(yaml.safe_dump({"detect_batch": {"max_batch": 8, "max_wiat_ms": 3}}))
    res = CliRunner().invoke(main, ["-c", str(bad), "run"])
    assert res.exit_code == 2 and "max_wiat_ms" in res.stderr


# ----------------------------------------------------------------------------- scan
@pytest.fixture(scope="module")
def scan_clip(tmp_path_factory, faces_root) -> Path:
    from stream.media.images import load_image

    other = load_image(faces_root / "wild_dev" / "ids" / "c5_madonna" / "1.jpg")
    d = tmp_path_factory.mktemp("scan")
    return render_clip(d / "clip.mp4", [Appearance(astronaut_head(), 1.0, 3.0), Appearance(other, 3.5, 5.5)], duration_s=6.0)


def test_scan_events_at_video_times_and_corrupt_file_continues(tmp_path, scan_clip, astro_gallery):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(scan_clip.read_bytes()[:2000])
    out = tmp_path / "report.json"
    ann = tmp_path / "annotated.mp4"
    res = subprocess.run(FACEWATCH + ["scan", "--gallery", str(astro_gallery), str(corrupt), str(scan_clip),
                                      "--json-out", str(out), "--annotate", str(ann)],
                         cwd=REPO, capture_output=True, text=True, timeout=240)
    assert res.returncode == 3, res.stderr[-2000:]  # a partial result: one file could not be read
    rep = json.loads(out.read_text())
    bad, good = rep["videos"]
    assert bad["status"] == "failed" and "cannot be opened" in bad["reason"]
    assert good["status"] == "complete" and good["reason"] is None and good["frames_decoded"] == 150
    watch = [e for e in good["events"] if e["kind"] == "watchlist"]
    assert [e["identity"] for e in watch] == ["astronaut"]  # and none for the non-enrolled face
    assert abs(watch[0]["video_time"] - 1.0) <= 0.5
    a = good["appearances"]["astronaut"]
    assert abs(a["first_seen"] - 1.0) <= 0.5 and abs(a["last_seen"] - 3.0) <= 0.5 and a["best_score"] > 0.95
    assert set(good["appearances"]) == {"astronaut"}
    cap = cv2.VideoCapture(str(tmp_path / "annotated-clip.mp4"))  # one annotated file per scanned video
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 150


# ----------------------------------------------------------------------------- live + webhook + restart
class Receiver(http.server.BaseHTTPRequestHandler):
    received: list = []
    fail_first = 1

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if Receiver.fail_first > 0:
            Receiver.fail_first -= 1
            self.send_response(500)
            self.end_headers()
            return
        Receiver.received.append((json.loads(body), self.headers.get("X-Facewatch-Signature"), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


@pytest.fixture()
def webhook_server():
    Receiver.received, Receiver.fail_first = [], 1
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook"
    srv.shutdown()


@pytest.fixture(scope="module")
def live_clip(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("live")
    return render_clip(d / "live.mp4", [Appearance(astronaut_head(), 0.3, 2.3)], size=(1280, 720), duration_s=3.0)


def test_live_alert_webhook_retry_hmac_and_stage_restart(tmp_path, live_clip, astro_gallery, webhook_server):
    import hashlib
    import hmac

    frames_ep = f"tcp://127.0.0.1:{free_port()}"  # tcp so this test can also reach the detect stage's input
    cfg = write_config(tmp_path / "cfg.yaml", tmp_path, astro_gallery,
                       [{"name": "door", "source": str(live_clip), "fps": 8, "replay": True}],
                       alerts={"cooldown_s": 0, "sinks": {"console": True, "jsonl": "alerts.jsonl",
                                                          "webhook": {"url": webhook_server, "secret_env": "FW_TEST_SECRET",
                                                                      }}, "delivery": {"backoff_s": 0.2}},
                       sockets={"frames": frames_ep, "run_dir": str(tmp_path / "run")})
    (tmp_path / "run").mkdir()
    os.environ["FW_TEST_SECRET"] = "s3cret"
    run = Run(cfg)
    store = tmp_path / "events.sqlite"
    try:
        evs = wait_for(lambda: events(store), 90, "the first alert")
        e = evs[0]
        assert e["identity"] == "astronaut" and e["camera"] == "door" and e["score"] >= e["threshold"]
        assert 0 < e["latency_ms"] < 5000
        assert Path(e["chip_path"]).is_file() and Path(e["frame_path"]).is_file()
        assert oct(Path(e["frame_path"]).stat().st_mode & 0o777) == "0o600"
        got = wait_for(lambda: Receiver.received, 30, "webhook delivery after a failed attempt")
        payload, sig, body = got[0]
        assert payload["identity"] == "astronaut"
        assert sig == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        wait_for(lambda: events(store)[0]["deliveries"]["webhook"] == "delivered", 20, "webhook state delivered")
        first_id = events(store)[0]["id"]
        webhook = next(d for d in EventStore(store).delivery_states(first_id) if d["sink"] == "webhook")
        assert webhook["attempts"] == 2 and webhook["last_error"] is None  # one 500, then delivered
        assert json.loads((tmp_path / "alerts.jsonl").read_text().splitlines()[0])["identity"] == "astronaut"
        # metrics endpoint on 127.0.0.1
        port = yaml.safe_load(cfg.read_text())["metrics"]["port"]
        import requests

        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'facewatch_frames_out_total{stage="capture:door"}' in text or 'facewatch_frames_out{stage="capture:door"}' in text
        # malformed messages on a live socket are logged, counted and skipped; the stage keeps running
        import zmq

        ctx = zmq.Context()
        bad = ctx.socket(zmq.PUSH)
        bad.setsockopt(zmq.LINGER, 0)  # a failure below must not leave a context that blocks a later GC
        bad.connect(frames_ep)
        for parts in ([b"not json"], [b'{"t": "frame", "arrays": [["image", "uint8", [720, 1280, 3]]]}', b"short"],
                      [b'{"t": "evil"}']):
            bad.send_multipart(parts)
        detect_before = run.pid("detect")
        # each stage process names its role in ps/top
        assert Path(f"/proc/{detect_before}/cmdline").read_bytes().startswith(b"facewatch: detect")
        assert Path(f"/proc/{run.pid('capture:door')}/cmdline").read_bytes().startswith(b"facewatch: capture:door")
        wait_for(lambda: re.search(r'facewatch_malformed(_total)?\{stage="detect"\} 3\.0',
                                   requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text), 20,
                 "3 malformed messages counted by detect")
        bad.close(0)
        ctx.term()
        assert run.pid("detect") == detect_before and "skipped a malformed message" in run.text()
        # SIGKILL the detect stage: the supervisor restarts it and alerts resume
        def frames_in() -> float:
            m = re.search(r'facewatch_frames_in_total\{stage="detect"\} ([0-9.e+]+)',
                          requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
            return float(m.group(1)) if m else -1.0

        detect_pid = run.pid("detect")
        counted = frames_in()
        assert counted > 0
        os.kill(detect_pid, signal.SIGKILL)
        killed_at = time.time()
        wait_for(lambda: run.pid("detect") != detect_pid, 30, "detect restarted")
        jsonl = tmp_path / "alerts.jsonl"
        wait_for(lambda: [ln for ln in jsonl.read_text().splitlines() if json.loads(ln)["ts_capture"] > killed_at + 0.5],
                 90, f"an alert after the restart (killed at {killed_at:.1f})")
        # the restarted stage's counters continue from the old ones: a Prometheus counter never goes down
        assert frames_in() > counted
        assert "was killed by SIGKILL; restarting" in run.text()
        # a stage restarted within the window: the pipeline says it is degraded, in the log and in a metric
        assert "pipeline DEGRADED: stage detect restarted" in run.text()
        assert "facewatch_pipeline_healthy 0.0" in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        parent = run.proc.pid
        kids = descendants_of(parent)
        code = run.stop()
    assert code == 0, run.text()[-3000:]
    assert len(kids) >= 5, f"expected the stage processes under facewatch run, got {kids}"
    # the stages end before facewatch run does; the fork server they were forked from sees it exit and follows
    end = time.monotonic() + 5
    while any(alive(k) for k in kids) and time.monotonic() < end:
        time.sleep(0.1)
    left = {k: Path(f"/proc/{k}/cmdline").read_bytes().replace(b"\0", b" ")[:200] for k in kids if alive(k)}
    assert not left, f"processes still running 5 s after facewatch run stopped: {left}"
    # the private ipc:// run directory (sockets of every stage) is removed on stop
    assert list((tmp_path / "run").iterdir()) == []


# ----------------------------------------------------------------------------- RTSP
GST_OK = shutil.which("ffmpeg") and Path("/usr/bin/python3").exists() and subprocess.run(
    ["/usr/bin/python3", "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"],
    capture_output=True).returncode == 0


class RtspServer:
    def __init__(self, h264: Path, port: int) -> None:
        self.h264, self.port, self.proc = h264, port, None

    def start(self) -> str:
        self.proc = subprocess.Popen(["/usr/bin/python3", str(REPO / "tools" / "rtsp_server.py"), "--file", str(self.h264),
                                      "--port", str(self.port), "--path", "/cam"], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("READY"), line
        return line.split()[1]

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.mark.skipif(not GST_OK, reason="needs Debian's GStreamer RTSP server (python3-gi, gir1.2-gst-rtsp-server-1.0) and ffmpeg")
def test_rtsp_camera_alerts_then_reconnects_after_server_restart(tmp_path, live_clip, astro_gallery):
    h264 = tmp_path / "clip.h264"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(live_clip), "-c:v", "libx264", "-bf", "0", "-g", "25",
                    "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-f", "h264", str(h264)], check=True)
    server = RtspServer(h264, free_port())
    url = server.start()
    cfg = write_config(tmp_path / "cfg.yaml", tmp_path, astro_gallery, [{"name": "rtsp-cam", "source": url, "fps": 8}],
                       alerts={"cooldown_s": 0, "sinks": {"console": True, "jsonl": "alerts.jsonl"}})
    jsonl = tmp_path / "alerts.jsonl"
    run = Run(cfg)
    store = tmp_path / "events.sqlite"
    try:
        wait_for(lambda: events(store), 90, "an alert from the RTSP camera")
        server.kill()
        wait_for(lambda: "OFFLINE" in run.text(), 30, "the camera going offline")
        down_at = time.time()
        time.sleep(1.0)
        server.start()
        wait_for(lambda: run.text().count("CAMERA rtsp-cam ONLINE") >= 2, 60, "the camera coming back online")
        wait_for(lambda: jsonl.exists() and [ln for ln in jsonl.read_text().splitlines()
                                              if json.loads(ln)["ts_capture"] > down_at], 90, "an alert after the reconnect")
        statuses = EventStore(store).statuses()
        assert [s["online"] for s in statuses][:3] == [1, 0, 1]
        # the outage is said in facewatch's words, with a reason; OpenCV's and FFmpeg's own lines stay out
        text = run.text()
        assert re.search(r"CAMERA rtsp-cam OFFLINE: .+", text)
        assert not re.search(r"\[ ?WARN:|\[ERROR:|\[(tcp|rtsp|h264)[^\]]* @ 0x|backend is generally available", text), text
    finally:
        server.kill()
        assert run.stop() == 0


def test_run_json_writes_one_json_object_per_line(tmp_path, live_clip, astro_gallery):
    """``run --json``: stdout is JSON lines only (status, camera, alert), so a program can read it."""
    cfg = write_config(tmp_path / "cfg.yaml", tmp_path, astro_gallery,
                       [{"name": "door", "source": str(live_clip), "fps": 8, "replay": True}])
    proc = subprocess.Popen(FACEWATCH + ["--json", "run", "-c", str(cfg)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen: list[dict] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any(o.get("type") == "alert" for o in seen):
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(json.loads(line))  # every line must be JSON
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
    seen += [json.loads(ln) for ln in rest.splitlines() if ln.strip()]
    kinds = [o["type"] for o in seen]
    assert kinds[0] == "status" and seen[0]["cameras"] == ["door"]
    assert {"type": "camera", "camera": "door", "online": True} == {k: seen[kinds.index("camera")][k] for k in ("type", "camera", "online")}
    alert = seen[kinds.index("alert")]
    assert alert["identity"] == "astronaut" and alert["camera"] == "door" and alert["score"] >= alert["threshold"]
    assert proc.returncode == 0
