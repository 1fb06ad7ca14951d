"""The operator surface end to end: ``facewatch run`` with the HTTP server inside (``api.enabled``), real stage
processes, real ZeroMQ; unknown faces alerted, grouped as one visitor across visits, shown in the API and the
live stream; recorded video stored by ``scan --store`` beside live events."""
from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import httpx

from test_api import FACEWATCH, REPO, free_port
from test_pipeline import Run, live_clip, wait_for, write_config  # noqa: F401 (live_clip is a fixture)


def test_unknown_visitor_alerts_are_grouped_and_stream_live(tmp_path, live_clip):
    empty = tmp_path / "gallery"  # no gallery yet (a camera alerting on unknown faces may start without one)
    port = free_port()
    cfg = write_config(tmp_path / "cfg.yaml", tmp_path, empty,
                       [{"name": "lobby", "source": str(live_clip), "fps": 8, "replay": True, "alert_on": "unknown"}],
                       api={"enabled": True, "port": port}, live={"frame_interval_s": 0.5},
                       unknown={"min_face": 60})
    run = Run(cfg)
    url = f"http://127.0.0.1:{port}"
    got: list[dict] = []

    def listen() -> None:
        try:
            with httpx.Client(base_url=url, timeout=60) as c, c.stream("GET", "/api/stream") as r:
                kind = None
                for line in r.iter_lines():
                    if line.startswith("event:"):
                        kind = line.split(":", 1)[1].strip()
                    elif line.startswith("data:") and kind in ("alert", "camera"):
                        got.append({**json.loads(line.split(":", 1)[1]), "sse": kind})
        except httpx.HTTPError as exc:
            got.append({"sse": "error", "error": repr(exc)})

    try:
        wait_for(lambda: "serving on" in run.text(), 60, "the HTTP server inside run")
        threading.Thread(target=listen, daemon=True).start()
        with httpx.Client(base_url=url, timeout=30) as c:
            # the clip loops: one visit per loop, the same face each time -> one visitor, several events
            wait_for(lambda: c.get("/api/visitors").json()["visitors"]
                     and c.get("/api/visitors").json()["visitors"][0]["count"] >= 3, 90, "three visits of the unknown face")
            vs = c.get("/api/visitors").json()["visitors"]
            assert len(vs) == 1, vs
            evs = c.get("/api/events", params={"kind": "unknown"}).json()["events"]
            assert {e["unknown_id"] for e in evs} == {vs[0]["unknown_id"]} and all(e["face_url"] for e in evs)
            assert c.get(evs[0]["face_url"]).headers["content-type"] == "image/jpeg"
            # search by the face of one visit finds the others
            sim = c.get(f"/api/events/{evs[0]['id']}/similar").json()["results"]
            assert {r["event"]["id"] for r in sim} >= {e["id"] for e in evs[1:]}
            cams = c.get("/api/cameras").json()["cameras"]
            assert cams[0]["name"] == "lobby" and cams[0]["online"] is True and cams[0]["fps_in"] > 0, cams
            assert c.get(cams[0]["frame_url"]).status_code == 200
        wait_for(lambda: any(g["sse"] == "alert" for g in got), 20, "an alert on the live stream")
        alert = next(g for g in got if g["sse"] == "alert")
        assert alert["kind"] == "unknown" and alert["camera"] == "lobby" and alert["unknown_id"] == vs[0]["unknown_id"]
        assert any(g["sse"] == "camera" and g["name"] == "lobby" for g in got)
    finally:
        code = run.stop()
    assert code == 0, run.text()[-3000:]
    assert "Traceback" not in run.text()


def test_scan_store_puts_recorded_video_beside_live_events(tmp_path, live_clip, astro_gallery):
    cfg = write_config(tmp_path / "cfg.yaml", tmp_path, astro_gallery, [], api={"port": free_port()})
    res = subprocess.run(FACEWATCH + ["-c", str(cfg), "scan", "--store", str(live_clip)], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    from stream.store.events import EventFilter, EventStore

    store = EventStore(tmp_path / "events.sqlite")
    evs, n = store.query(EventFilter(source="scan"))
    assert n == 1 and evs[0].identity == "astronaut" and evs[0].video_file == str(live_clip)
    assert 0.2 <= evs[0].video_time <= 2.4 and evs[0].latency_ms is None and Path(evs[0].chip_path).is_file()
    assert store.embedding(evs[0].id) is not None
    store.close()
    # a store that cannot be written: refused before scanning, nothing half-done
    bad = write_config(tmp_path / "bad.yaml", tmp_path / "nope", astro_gallery, [])
    (tmp_path / "nope").mkdir()
    (tmp_path / "nope" / "events.sqlite").mkdir()
    res = subprocess.run(FACEWATCH + ["-c", str(bad), "scan", "--store", str(live_clip)], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2 and "alerts.store" in res.stderr and "Traceback" not in res.stderr
