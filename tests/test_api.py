"""The HTTP API against a real uvicorn server (``facewatch serve`` as a subprocess) with httpx: real event store,
real gallery, real face models, real Server-Sent Events. Events are put in the store the way the alert stage
does (``EventStore.add`` with snapshots and the track's embedding); the live pipeline end to end is in
tests/test_api_live.py and tests/test_browser.py.
"""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import yaml

from stream.config import SHIPPED_CALIBRATIONS
from stream.records import Event
from stream.store.events import EventStore
from stream.store.snapshots import Snapshots

REPO = Path(__file__).resolve().parent.parent
FACEWATCH = [sys.executable, "-m", "stream.cli"]
TOKEN = "t0ken-for-the-api-tests-0123456789"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``facewatch -c CFG serve`` on a free port; ready once it says "serving on"."""

    def __init__(self, cfg: Path, env: dict | None = None, host: str = "127.0.0.1") -> None:
        self.port = free_port()
        self.log = cfg.with_suffix(f".{self.port}.log")
        self.fh = open(self.log, "w")
        self.proc = subprocess.Popen(FACEWATCH + ["-c", str(cfg), "serve", "--host", host, "--port", str(self.port)],
                                     cwd=REPO, stdout=self.fh, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        self.url = f"http://127.0.0.1:{self.port}"
        end = time.monotonic() + 60
        while "serving on" not in self.log.read_text():
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < end, "server did not start: " + self.log.read_text()
            time.sleep(0.1)

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.fh.close()
        return self.proc.returncode


def write_cfg(path: Path, data_dir: Path, **extra) -> Path:
    cfg = {"data_dir": str(data_dir), "engines": {"engine": "onnxruntime", "threads": 1},
           "cameras": [{"name": "door", "source": "rtsp://operator:s3cret@127.0.0.1:9/cam"}],
           "alerts": {"sinks": {"webhook": {"url": "http://user:pw@127.0.0.1:9/hook?key=abc"}}},
           "api": {"max_upload_mb": 1.0, "max_files": 3}}
    for k, v in extra.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    path.write_text(yaml.safe_dump(cfg))
    return path


def variant(img: np.ndarray) -> np.ndarray:
    """Another photo of the same face: mirrored, rescaled and darker."""
    out = cv2.flip(img, 1)
    out = cv2.resize(out, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)
    return np.clip(out.astype(np.float32) * 0.8, 0, 255).astype(np.uint8)


def jpeg(img: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", img)[1].tobytes()


@pytest.fixture(scope="module")
def world(tmp_path_factory, analyzer, astronaut_bgr):
    """A data dir with the astronaut enrolled (from the original photo) and events of a variant photo of them,
    of an unknown stranger (a random face vector) and of recorded video; one server for the module."""
    from stream.store.gallery import Gallery

    d = tmp_path_factory.mktemp("api")
    g = Gallery(d / "gallery")
    g.enroll("astronaut", analyzer.analyze(astronaut_bgr)[0].embedding[None])
    g.close()
    var = variant(astronaut_bgr)
    face = analyzer.analyze(var)[0]
    store = EventStore(d / "events.sqlite")
    snaps = Snapshots(d / "snapshots")
    chip = face.crop
    rng = np.random.default_rng(7)
    stranger = rng.normal(size=128).astype(np.float32)
    stranger /= np.linalg.norm(stranger)
    t0 = time.time() - 3600
    ids = {}
    for i, (kind, ident, emb, cam, uid, src) in enumerate([
            ("watchlist", "astronaut", face.embedding, "door", None, "live"),
            ("watchlist", "astronaut", face.embedding, "yard", None, "live"),
            ("unknown", None, stranger, "door", 1, "live"),
            ("unknown", None, stranger, "door", 1, "live"),
            ("watchlist", "astronaut", face.embedding, "clip", None, "scan")]):
        ts = t0 + 60 * i
        cp, fp = snaps.write(cam, ts, i, chip, var)
        e = store.add(Event(ts=ts, ts_capture=ts - 0.1, camera=cam, kind=kind, identity=ident, score=0.97 if ident else 0.3,
                            threshold=0.9508, track_id=i, latency_ms=None if src == "scan" else 100.0 + i, box=[1, 2, 3, 4],
                            chip_path=cp, frame_path=fp, unknown_id=uid, source=src,
                            video_file="/videos/clip.mp4" if src == "scan" else None,
                            video_time=12.5 if src == "scan" else None), embedding=emb)
        ids.setdefault(f"{kind}:{cam}", []).append(e.id)
    # an event whose stored snapshot path points outside the snapshot directory must never be served
    e = store.add(Event(ts=t0 + 400, ts_capture=t0 + 400, camera="door", kind="unknown", score=0.1, threshold=0.95,
                        track_id=99, latency_ms=1.0, chip_path="/etc/passwd", frame_path=str(d / "gallery" / "gallery.sqlite")))
    ids["outside"] = [e.id]
    store.close()
    cfg = write_cfg(d / "cfg.yaml", d)
    srv = Server(cfg)
    yield {"dir": d, "srv": srv, "ids": ids, "variant": var, "url": srv.url, "cfg": cfg}
    srv.stop()


@pytest.fixture()
def client(world):
    with httpx.Client(base_url=world["url"], timeout=60) as c:
        yield c


def err(r: httpx.Response, status: int, code: str | None = None) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()["error"]
    assert "\n" not in body["message"] and body["message"]
    if code:
        assert body["code"] == code, body
    return body["message"]


# ----------------------------------------------------------------------------- system
def test_health_ready_threshold_openapi(client, world):
    assert client.get("/api/health").json() == {"status": "ok"}
    r = client.get("/api/ready").json()
    assert r["ready"] is True and r["checks"]["gallery"] == "ok" and r["checks"]["event_store"] == "ok"
    th = client.get("/api/threshold").json()
    shipped = SHIPPED_CALIBRATIONS["fast"]
    assert th["threshold"] == pytest.approx(shipped.threshold) and th["far"] == pytest.approx(0.001)
    assert th["rule"] == "votes" and th["votes_far_upper"] == pytest.approx(shipped.votes_far_upper)
    assert th["votes_threshold"] == pytest.approx(max(shipped.threshold, shipped.votes_threshold))
    assert th["gallery_size"] == 10 and th["enrolled"] >= 1 and "calibrate" in th["source"]
    paths = client.get("/api/openapi.json").json()["paths"]
    for p in ("/api/events", "/api/events/{event_id}/confirm", "/api/events/{event_id}/reject", "/api/search",
              "/api/identify", "/api/verify", "/api/gallery", "/api/gallery/{name}", "/api/cameras", "/api/stream",
              "/api/visitors", "/api/events/export", "/api/ready", "/api/config", "/metrics"):
        assert p in paths, p
    page = client.get("/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert "script-src 'self'" in page.headers["content-security-policy"] and page.headers["x-frame-options"] == "DENY"
    assert client.get("/api/health").headers["x-content-type-options"] == "nosniff"
    m = client.get("/metrics").text
    assert 'facewatch_api_requests_total{route="/api/health",status="200"}' in m


def test_config_is_redacted(client):
    conf = client.get("/api/config").json()
    text = json.dumps(conf)
    assert "s3cret" not in text and "pw@" not in text and "key=abc" not in text
    assert conf["cameras"][0]["source"].startswith("rtsp://") and "***" in conf["cameras"][0]["source"]


def test_unknown_route_and_bad_query_are_json_errors(client):
    err(client.get("/api/nothing-here"), 404, "not_found")
    assert "limit" in err(client.get("/api/events", params={"limit": 0}), 400, "bad_request")
    assert "kind" in err(client.get("/api/events", params={"kind": "friend"}), 400)
    err(client.get("/api/events/abc"), 400)
    assert "no event with id 424242" in err(client.get("/api/events/424242"), 404)


# ----------------------------------------------------------------------------- events
def test_events_filters_paging_and_export(client, world):
    all_ = client.get("/api/events").json()
    assert all_["total"] == 6 and len(all_["events"]) == 6
    ts = [e["ts_capture"] for e in all_["events"]]
    assert ts == sorted(ts, reverse=True)  # newest first
    e0 = all_["events"][0]
    assert "chip_path" not in e0 and "frame_path" not in e0  # server paths are not for clients
    assert client.get("/api/events", params={"camera": "door"}).json()["total"] == 4
    assert client.get("/api/events", params={"kind": "unknown"}).json()["total"] == 3
    assert client.get("/api/events", params={"identity": "astronaut"}).json()["total"] == 3
    assert client.get("/api/events", params={"min_score": 0.9}).json()["total"] == 3
    scan = client.get("/api/events", params={"source": "scan"}).json()["events"]
    assert len(scan) == 1 and scan[0]["video_file"] == "/videos/clip.mp4" and scan[0]["video_time"] == 12.5
    assert scan[0]["latency_ms"] is None
    page = client.get("/api/events", params={"limit": 2, "offset": 2}).json()
    assert page["total"] == 6 and [e["id"] for e in page["events"]] == [e["id"] for e in all_["events"][2:4]]
    t_mid = all_["events"][2]["ts_capture"]
    assert client.get("/api/events", params={"until": t_mid}).json()["total"] == 4
    assert client.get("/api/events", params={"since": t_mid}).json()["total"] == 3
    r = client.get("/api/events/export", params={"format": "csv", "camera": "door"})
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 4 and {row["camera"] for row in rows} == {"door"} and "chip_path" not in rows[0]
    j = client.get("/api/events/export", params={"format": "json"}).json()
    assert len(j["events"]) == 6
    err(client.get("/api/events/export", params={"format": "xml"}), 400)


def test_snapshots_are_served_only_from_the_snapshot_directory(client, world):
    eid = world["ids"]["watchlist:door"][0]
    r = client.get(f"/api/events/{eid}/face.jpg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (256, 256)
    assert client.get(f"/api/events/{eid}/frame.jpg").status_code == 200
    bad = world["ids"]["outside"][0]
    err(client.get(f"/api/events/{bad}/face.jpg"), 404)  # stored path is /etc/passwd
    err(client.get(f"/api/events/{bad}/frame.jpg"), 404)  # the gallery database
    assert client.get(f"/api/events/{bad}").json()["face_url"] == "/api/events/%d/face.jpg" % bad
    for path in ("/api/events/..%2F..%2Fetc%2Fpasswd/face.jpg", "/ui/..%2F..%2Fconfig.py", "/ui/../../stream/config.py",
                 "/api/cameras/..%2Fcameras.json/latest.jpg", "/api/cameras/door%2F..%2F..%2Fgallery/latest.jpg"):
        r = client.get(path)
        assert r.status_code in (400, 404), (path, r.status_code)
        assert b"root:" not in r.content and b"SQLite" not in r.content and b"BaseModel" not in r.content


def test_visitors_are_grouped_unknown_faces(client, world):
    vs = client.get("/api/visitors").json()["visitors"]
    assert len(vs) == 1 and vs[0]["unknown_id"] == 1 and vs[0]["count"] == 2 and vs[0]["cameras"] == ["door"]
    assert vs[0]["event"]["kind"] == "unknown"


# ----------------------------------------------------------------------------- search by face
def test_search_by_photo_finds_the_persons_events_best_first(client, world, astronaut_bgr):
    r = client.post("/api/search", files={"file": ("astro.jpg", jpeg(astronaut_bgr), "image/jpeg")})
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    sims = [x["similarity"] for x in res]
    assert sims == sorted(sims, reverse=True)
    top3 = {x["event"]["id"] for x in res[:3]}
    astro_ids = set(world["ids"]["watchlist:door"] + world["ids"]["watchlist:yard"] + world["ids"]["watchlist:clip"])
    assert top3 == astro_ids and min(sims[:3]) > 0.9 and max(sims[3:], default=0) < 0.5


def test_similar_events_of_an_event_exclude_itself(client, world):
    eid = world["ids"]["unknown:door"][0]
    res = client.get(f"/api/events/{eid}/similar").json()["results"]
    assert res[0]["event"]["id"] == world["ids"]["unknown:door"][1] and res[0]["similarity"] > 0.99
    assert eid not in [x["event"]["id"] for x in res]
    assert "embedding" in err(client.get(f"/api/events/{world['ids']['outside'][0]}/similar"), 409)


# ----------------------------------------------------------------------------- recognition
def test_identify_and_verify(client, astronaut_bgr):
    r = client.post("/api/identify", files={"file": ("a.png", cv2.imencode(".png", astronaut_bgr)[1].tobytes(), "image/png")})
    body = r.json()
    assert r.status_code == 200 and len(body["faces"]) == 1, body
    f = body["faces"][0]
    assert f["identity"] == "astronaut" and f["score"] >= body["threshold"] and f["det_score"] > 0.9
    r = client.post("/api/verify", files={"a": ("a.jpg", jpeg(astronaut_bgr)), "b": ("b.jpg", jpeg(variant(astronaut_bgr)))})
    v = r.json()
    assert r.status_code == 200 and v["same"] is True and v["score"] >= v["threshold"]
    grey = np.full((200, 200, 3), 128, np.uint8)
    assert client.post("/api/identify", files={"file": ("g.jpg", jpeg(grey))}).json()["faces"] == []
    assert "no face" in err(client.post("/api/verify", files={"a": ("a.jpg", jpeg(astronaut_bgr)), "b": ("g.jpg", jpeg(grey))}),
                            422, "no_face")


def test_bad_uploads_are_refused_with_one_clear_line(client, astronaut_bgr, tmp_path):
    assert "not a JPEG" in err(client.post("/api/identify", files={"file": ("notes.txt", b"hello world" * 50)}), 415,
                               "unsupported_type")
    assert "truncated" in err(client.post("/api/identify", files={"file": ("cut.jpg", jpeg(astronaut_bgr)[:3000])}), 400)
    assert "empty" in err(client.post("/api/identify", files={"file": ("e.jpg", b"")}), 400)
    big = np.random.default_rng(0).integers(0, 255, (1200, 1200, 3), np.uint8)
    assert "api.max_upload_mb" in err(client.post("/api/identify", files={"file": ("big.png", cv2.imencode(".png", big)[1].tobytes())}),
                                      413, "too_large")
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><image href="file:///etc/passwd"/></svg>'
    err(client.post("/api/identify", files={"file": ("x.svg", svg, "image/svg+xml")}), 415)
    bomb = tmp_path / "bomb.png"  # a tiny file that claims 30000 x 30000 pixels
    from PIL import Image

    Image.new("1", (30000, 30000)).save(bomb)
    assert "pixels" in err(client.post("/api/identify", files={"file": ("bomb.png", bomb.read_bytes())}), 400)
    m = err(client.post("/api/identify", files={"file": ("../../etc/x\x1b.jpg", b"nope")}), 415)
    assert m.startswith("x.jpg:")  # the client's name is echoed without directories or control characters
    err(client.post("/api/identify"), 400)  # no file at all
    # a body over the whole limit is refused from its Content-Length, before anything is parsed or spooled
    r = client.post("/api/identify", content=b"x" * (5 * 1024 * 1024), headers={"content-type": "multipart/form-data; boundary=b"})
    assert "larger than" in err(r, 413, "too_large")

    def chunks():  # a valid multipart file part with no Content-Length: cut off once the limit has arrived
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
        for _ in range(6):
            yield b"y" * (1024 * 1024)
        yield b"\r\n--b--\r\n"

    r = client.post("/api/identify", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    err(r, 413, "too_large")


# ----------------------------------------------------------------------------- gallery
def test_gallery_enroll_by_upload_each_photo_has_its_verdict(client, astronaut_bgr):
    grey = np.full((300, 300, 3), 90, np.uint8)
    r = client.post("/api/gallery", data={"name": "  Eileen   Collins "},
                    files=[("files", ("one.jpg", jpeg(variant(astronaut_bgr)))), ("files", ("empty.jpg", jpeg(grey))),
                           ("files", ("doc.txt", b"not an image at all"))])
    body = r.json()
    assert r.status_code == 200, body
    assert body["person"] == "Eileen Collins" and body["samples"] == 1
    verdicts = {x["file"]: (x["status"], x["reason"]) for x in body["results"]}
    assert verdicts["one.jpg"] == ("enrolled", None)
    assert verdicts["empty.jpg"][0] == "rejected" and "no face" in verdicts["empty.jpg"][1]
    assert verdicts["doc.txt"][0] == "rejected" and "not a JPEG" in verdicts["doc.txt"][1]
    persons = {p["name"]: p for p in client.get("/api/gallery").json()["persons"]}
    assert persons["Eileen Collins"]["samples"] == 1 and persons["Eileen Collins"]["thumbnail_url"]
    t = client.get(persons["Eileen Collins"]["thumbnail_url"])
    assert t.status_code == 200 and cv2.imdecode(np.frombuffer(t.content, np.uint8), cv2.IMREAD_COLOR) is not None
    r = client.post("/api/gallery/Eileen%20Collins/samples", files=[("files", ("two.jpg", jpeg(astronaut_bgr)))])
    assert r.json()["samples"] == 2
    # rename: conflict, invalid, unknown; then a real rename
    assert "already" in err(client.patch("/api/gallery/Eileen%20Collins", json={"name": "astronaut"}), 409)
    err(client.patch("/api/gallery/Eileen%20Collins", json={"name": "a/b"}), 400)
    err(client.patch("/api/gallery/Nobody", json={"name": "X"}), 404)
    assert client.patch("/api/gallery/Eileen%20Collins", json={"name": "E. Collins"}).json() == {"person": "E. Collins",
                                                                                               "samples": 2}
    assert client.get("/api/gallery/E.%20Collins/thumbnail.jpg").status_code == 200
    # all rejected: 422 with every verdict; too many files: 413
    r = client.post("/api/gallery", data={"name": "Ghost"}, files=[("files", ("g.jpg", jpeg(grey)))])
    assert err(r, 422, "no_face") and r.json()["error"]["results"][0]["status"] == "rejected"
    assert "Ghost" not in {p["name"] for p in client.get("/api/gallery").json()["persons"]}
    err(client.post("/api/gallery", data={"name": "Many"}, files=[("files", (f"{i}.jpg", jpeg(grey))) for i in range(4)]),
        413, "too_large")
    err(client.post("/api/gallery", data={"name": "bad\x07name"}, files=[("files", ("a.jpg", jpeg(astronaut_bgr)))]), 400)
    assert client.delete("/api/gallery/E.%20Collins").json() == {"removed": "E. Collins", "samples": 2}
    err(client.delete("/api/gallery/E.%20Collins"), 404)


# ----------------------------------------------------------------------------- feedback
def test_not_this_person_stops_the_repeat_match_and_is_this_person_enrolls(client, world, astronaut_bgr):
    var = world["variant"]
    ident = lambda img: client.post("/api/identify", files={"file": ("x.jpg", jpeg(img))}).json()["faces"][0]["identity"]  # noqa: E731
    assert ident(var) == "astronaut"  # the event's face matches before the feedback
    eid = world["ids"]["watchlist:yard"][0]
    r = client.post(f"/api/events/{eid}/reject", json={})
    assert r.status_code == 200, r.text
    assert r.json()["person"] == "astronaut" and r.json()["negatives"] == 1
    assert r.json()["event"]["feedback"] == "rejected" and r.json()["event"]["feedback_identity"] == "astronaut"
    assert ident(var) is None  # that face no longer matches the person
    assert ident(astronaut_bgr) == "astronaut"  # the enrolled photo of the real person still does
    assert {p["name"]: p["negatives"] for p in client.get("/api/gallery").json()["persons"]}["astronaut"] == 1
    # "this is X" on an unknown event enrolls its face as X
    uid = world["ids"]["unknown:door"][0]
    r = client.post(f"/api/events/{uid}/confirm", json={"identity": "Stranger One"})
    assert r.status_code == 200, r.text
    assert r.json()["person"] == "Stranger One" and r.json()["samples"] == 1 and r.json()["event"]["feedback"] == "confirmed"
    persons = {p["name"]: p for p in client.get("/api/gallery").json()["persons"]}
    assert persons["Stranger One"]["thumbnail_url"]  # the event's face chip became the thumbnail
    err(client.post(f"/api/events/{uid}/reject", json={}), 400)  # an unknown face: say who it is not
    err(client.post(f"/api/events/{eid}/reject", json={"identity": "Nobody Here"}), 404)
    err(client.post("/api/events/424242/reject", json={}), 404)
    err(client.post(f"/api/events/{world['ids']['outside'][0]}/confirm", json={"identity": "X"}), 409)


# ----------------------------------------------------------------------------- cameras and live stream
def test_cameras_say_when_no_pipeline_runs_and_show_the_latest_frame(client, world):
    cams = client.get("/api/cameras").json()["cameras"]
    assert [c["name"] for c in cams] == ["door"]
    assert cams[0]["online"] is None and "not running" in cams[0]["detail"]  # unknown, never "fine"
    err(client.get("/api/cameras/door/latest.jpg"), 404)
    err(client.get("/api/cameras/nope/latest.jpg"), 404)
    from stream.store.live import LiveDir

    live = LiveDir(world["dir"] / "live")
    live.ensure()
    live.write_frame("door", np.zeros((720, 1280, 3), np.uint8))
    live.write_cameras({"door": {"online": True, "fps_in": 5.0, "fps_processed": 4.5, "dropped": 3}})
    cams = client.get("/api/cameras").json()["cameras"]
    assert cams[0]["online"] is True and cams[0]["fps_processed"] == 4.5 and cams[0]["dropped"] == 3
    r = client.get(cams[0]["frame_url"])
    assert r.status_code == 200 and cv2.imdecode(np.frombuffer(r.content, np.uint8), 1).shape == (540, 960, 3)


def test_live_stream_delivers_a_new_alert_within_a_second(world):
    got: list[tuple[str, dict]] = []
    ready = threading.Event()

    def listen() -> None:
        with httpx.Client(base_url=world["url"], timeout=30) as c, c.stream("GET", "/api/stream") as r:
            event = None
            for line in r.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    got.append((event, json.loads(line.split(":", 1)[1])))
                    ready.set()
                    if event == "alert":
                        return

    th = threading.Thread(target=listen, daemon=True)
    th.start()
    assert ready.wait(10), "no hello on the stream"
    store = EventStore(world["dir"] / "events.sqlite")
    t = time.time()
    e = store.add(Event(ts=t, ts_capture=t, camera="door", kind="watchlist", identity="astronaut", score=0.99,
                        threshold=0.95, track_id=7, latency_ms=50.0))
    store.close()
    th.join(5)
    alerts = [d for k, d in got if k == "alert"]
    assert alerts and alerts[0]["id"] == e.id and alerts[0]["identity"] == "astronaut"
    assert time.time() - t < 2.0


# ----------------------------------------------------------------------------- security
def test_token_required_on_every_route_when_bound_beyond_loopback(world, tmp_path):
    d = world["dir"]
    cfg = write_cfg(tmp_path / "tok.yaml", d)
    # without a token the server refuses to listen on 0.0.0.0: one line, exit 2, nothing started
    res = subprocess.run(FACEWATCH + ["-c", str(cfg), "serve", "--host", "0.0.0.0", "--port", str(free_port())],
                         cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if k != "FACEWATCH_API_TOKEN"})
    assert res.returncode == 2, res.stderr
    assert "api.host" in res.stderr and "token" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    srv = Server(cfg, env={"FACEWATCH_API_TOKEN": TOKEN}, host="0.0.0.0")
    try:
        eid = world["ids"]["watchlist:door"][0]
        protected = ["/api/events", f"/api/events/{eid}", f"/api/events/{eid}/face.jpg", f"/api/events/{eid}/frame.jpg",
                     "/api/stream", "/metrics", "/api/config", "/api/cameras", "/api/cameras/door/latest.jpg", "/api/gallery",
                     "/api/gallery/astronaut/thumbnail.jpg", "/api/health", "/api/visitors", "/api/events/export",
                     "/api/threshold", "/api/ready", "/api/openapi.json", "/api/docs"]
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            for p in protected:
                assert c.get(p).status_code == 401, p
                assert c.get(p, headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code == 401, p
            assert c.post("/api/identify", files={"file": ("a.jpg", b"x")}).status_code == 401
            assert c.delete("/api/gallery/astronaut").status_code == 401
            assert c.get("/").status_code == 200  # the UI shell holds no data; it asks for the token
            assert c.get("/api/session").json() == {"auth_required": True, "authenticated": False}
            auth = {"Authorization": f"Bearer {TOKEN}"}
            assert c.get("/api/events", headers=auth).status_code == 200
            assert c.get(f"/api/events/{eid}/face.jpg", params={"token": TOKEN}).status_code == 200
            err(c.post("/api/login", json={"token": "nope-nope-nope-nope"}), 401)
            r = c.post("/api/login", json={"token": TOKEN})
            assert r.status_code == 204 and "httponly" in r.headers["set-cookie"].lower()
            assert c.get("/api/events").status_code == 200  # the cookie now
            assert c.get("/api/session").json() == {"auth_required": True, "authenticated": True}
        assert TOKEN not in srv.text()
    finally:
        srv.stop()


def test_biometric_files_are_owner_only(world):
    d = world["dir"]
    for p in [d / "events.sqlite", *(d / "snapshots").rglob("*.jpg"), *(d / "gallery").iterdir()]:
        if p.is_file() and not p.name.endswith(("-wal", "-shm")):
            assert p.stat().st_mode & 0o077 == 0, p
    for p in (d / "snapshots", d / "live"):
        if p.exists():
            assert p.stat().st_mode & 0o077 == 0, p
    idx = d / "events.sqlite.hnsw"
    if idx.exists():
        assert idx.stat().st_mode & 0o077 == 0


def test_serve_bad_inputs(tmp_path):
    cfg = write_cfg(tmp_path / "c.yaml", tmp_path)
    port = free_port()
    import socket

    with socket.socket() as s:  # the port is taken
        s.bind(("127.0.0.1", port))
        s.listen()
        res = subprocess.run(FACEWATCH + ["-c", str(cfg), "serve", "--port", str(port)], cwd=REPO, capture_output=True,
                             text=True, timeout=60)
    assert res.returncode == 2 and "api.port" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run(FACEWATCH + ["-c", str(cfg), "serve", "--json", "--host", "0.0.0.0", "--port", str(free_port())],
                         cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if k != "FACEWATCH_API_TOKEN"})
    out = json.loads(res.stdout)  # --json: the refusal is one JSON object on stdout
    assert res.returncode == 2 and out["exit_status"] == 2 and out["error"]["code"] == "preflight"
    assert any("api.host" in p for p in out["error"]["problems"]) and "Traceback" not in res.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"api": {"port": 70000}}))
    res = subprocess.run(FACEWATCH + ["-c", str(bad), "serve"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "api.port" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    bad.write_text(yaml.safe_dump({"api": {"token": "short"}}))
    res = subprocess.run(FACEWATCH + ["-c", str(bad), "serve"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "api.token" in res.stderr
    other = tmp_path / "other"
    (other / "events.sqlite").mkdir(parents=True)  # the event store path is a directory
    cfg = write_cfg(tmp_path / "d.yaml", other)
    res = subprocess.run(FACEWATCH + ["-c", str(cfg), "serve", "--port", str(free_port())], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2 and "alerts.store" in res.stderr and "Traceback" not in res.stderr
