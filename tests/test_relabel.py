"""Past unknown faces offered for relabelling once their person is enrolled: the event store (the original decision
kept beside the new label, migration of older files), the CLI end to end with the real models, the HTTP API
against a real ``facewatch serve``, and the Gallery/Events pages in Chromium when it is installed.

Faces are real photos (wild_dev): amy's photos 1-4 are enrolled and her photo 5 is a past unknown face; Madonna's
and Penny's faces are past unknown faces that must NOT be offered for amy."""
from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from browser_util import CHROMIUM
from stream.cli import main
from stream.config import load_config
from stream.media.images import load_image
from stream.records import Event
from stream.store.events import EventFilter, EventStore, RelabelError, UnknownEventError
from stream.store.gallery import Gallery
from stream.store.snapshots import Snapshots
from test_api import Server, err, write_cfg

pytestmark = pytest.mark.timeout(180)


def photo(faces_root: Path, rel: str) -> Path:
    return faces_root / "wild_dev" / "ids" / rel


# ----------------------------------------------------------------------------- the event store
def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return v / np.linalg.norm(v)


def add(st: EventStore, kind: str = "unknown", identity: str | None = None, emb: np.ndarray | None = None,
        embedder: str | None = "m", score: float = 0.3) -> int:
    t = time.time()
    return int(st.add(Event(ts=t, ts_capture=t, camera="door", kind=kind, identity=identity, score=score,
                            threshold=0.9, track_id=1, latency_ms=10.0, embedder=embedder), embedding=emb).id)


def test_store_keeps_the_original_decision_refuses_what_it_must_and_migrates_old_files(tmp_path):
    path = tmp_path / "events.sqlite"
    st = EventStore(path)
    face, watch, bare, judged, other = (add(st, emb=unit(1)), add(st, "watchlist", "zed", unit(2), score=0.97),
                                        add(st), add(st, emb=unit(3)), add(st, emb=unit(4)))
    st.set_feedback(judged, "rejected", "amy")
    st.close()
    db = sqlite3.connect(path)  # a file from before relabelling: no relabel columns
    for col in ("relabel_name", "relabel_score", "relabel_at", "relabel_by"):
        db.execute(f"ALTER TABLE events DROP COLUMN {col}")
    db.commit()
    db.close()

    st = EventStore(path)  # migrated on open, every event and id kept
    assert [e.id for e in st.events()] == [face, watch, bare, judged, other]
    assert [i for i, _, _ in st.unknown_faces()] == [face, other]  # no face / operator feedback: not offered
    [e] = st.relabel({face: 0.97}, "amy", "cli", at=1000.0)
    assert (e.kind, e.identity, e.score) == ("unknown", None, 0.3)  # the original decision
    assert (e.relabel_name, e.relabel_score, e.relabel_at, e.relabel_by) == ("amy", 0.97, 1000.0, "cli")
    [again] = st.relabel({face: 0.5}, "amy", "api", at=2000.0)  # idempotent: nothing changes
    assert again == e
    with pytest.raises(RelabelError, match="already relabelled as 'amy'"):
        st.relabel({face: 0.9}, "bob", "cli")
    with pytest.raises(RelabelError, match="not an unknown face.*watchlist 'zed'"):
        st.relabel({watch: 0.9}, "amy", "cli")
    with pytest.raises(RelabelError, match="no stored face embedding"):
        st.relabel({bare: 0.9}, "amy", "cli")
    with pytest.raises(RelabelError, match="operator feedback"):
        st.relabel({judged: 0.9}, "amy", "cli")
    with pytest.raises(UnknownEventError, match="no event with id 999"):
        st.relabel({other: 0.9, 999: 0.9}, "amy", "cli")
    with pytest.raises(RelabelError):
        st.relabel({other: 0.9, watch: 0.9}, "amy", "cli")
    assert st.get(other).relabel_name is None  # all or none
    assert [e.id for e in st.query(EventFilter(identity="amy"))[0]] == [face]  # the person's events include it
    assert [e.id for e in st.query(EventFilter(identity="zed"))[0]] == [watch]
    st.close()
    assert EventStore(path).get(face).relabel_name == "amy"  # persisted


# ----------------------------------------------------------------------------- the CLI, real models
@pytest.fixture()
def cli_world(tmp_path, fw_home, analyzer, faces_root):
    """A data dir with an event store of past faces (none enrolled yet) and the config that uses it."""
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump({"data_dir": str(tmp_path), "home": str(fw_home),
                                        "engines": {"engine": "onnxruntime", "threads": 2}}))
    cfg = load_config(cfg_path)
    emb = {rel: analyzer.analyze(load_image(photo(faces_root, rel)))[0].embedding
           for rel in ("bbt_amy/5.jpg", "c5_madonna/10.jpg", "bbt_penny/1.jpg", "bbt_amy/3.jpg")}
    st = EventStore(tmp_path / "events.sqlite")
    me = cfg.embedder_id
    ids = {"amy": add(st, emb=emb["bbt_amy/5.jpg"], embedder=me),
           "madonna": add(st, emb=emb["c5_madonna/10.jpg"], embedder=me),
           "penny": add(st, emb=emb["bbt_penny/1.jpg"], embedder=me),
           "watchlist": add(st, "watchlist", "zed", emb["bbt_amy/3.jpg"], embedder=me, score=0.99),
           "no_face": add(st, embedder=me),
           "other_model": add(st, emb=emb["bbt_amy/5.jpg"], embedder="another:model")}
    st.close()
    return {"cfg": cfg_path, "threshold": cfg.threshold, "ids": ids, "store": tmp_path / "events.sqlite"}


def cli(w, *args: str):
    res = CliRunner().invoke(main, ["-c", str(w["cfg"]), *args])
    assert "Traceback" not in res.output + res.stderr, res.output + res.stderr
    return res


def test_cli_offers_only_the_persons_past_faces_and_relabels_them_keeping_the_original(cli_world, faces_root):
    w, ids = cli_world, cli_world["ids"]
    res = cli(w, "gallery", "enroll", "amy", *(str(photo(faces_root, f"bbt_amy/{i}.jpg")) for i in range(1, 5)))
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1] == "1 past unknown event matches amy: facewatch events relabel-candidates amy"

    res = cli(w, "--json", "events", "relabel-candidates", "amy")
    assert res.exit_code == 0, res.output
    found = json.loads(res.stdout)
    assert [c["id"] for c in found["candidates"]] == [ids["amy"]]  # not Madonna, Penny, the watchlist event, ...
    [cand] = found["candidates"]
    assert cand["score"] >= w["threshold"] == found["threshold"] and cand["original_score"] == 0.3
    res = cli(w, "events", "relabel-candidates", "amy")
    assert res.stdout.splitlines()[0].startswith(f"{ids['amy']}\t") and "1 past unknown event(s) match amy" in res.stdout

    refusals = {"madonna": "does not match 'amy' at the threshold", "penny": "does not match 'amy' at the threshold",
                "watchlist": "not an unknown face", "no_face": "no stored face embedding",
                "other_model": "was embedded by 'another:model'"}
    for which, why in refusals.items():
        res = cli(w, "events", "relabel", "amy", "--event", str(ids["amy"]), "--event", str(ids[which]))
        assert res.exit_code == 2 and why in res.stderr and len(res.stderr.strip().splitlines()) == 1, (which, res.output)
    res = cli(w, "--json", "events", "relabel", "amy", "--event", "999")
    assert res.exit_code == 2 and "no event with id 999" in json.loads(res.stdout)["error"]["message"]
    res = cli(w, "--json", "events", "relabel", "amy", "--event", str(ids["madonna"]))
    assert json.loads(res.stdout)["error"]["code"] == "relabel"
    for args in ([], ["--all-candidates", "--event", str(ids["amy"])]):
        assert cli(w, "events", "relabel", "amy", *args).exit_code == 2
    assert "no person named 'ghost'" in cli(w, "events", "relabel", "ghost", "--all-candidates").stderr
    st = EventStore(w["store"])
    assert all(e.relabel_name is None for e in st.events())  # every refusal changed nothing
    st.close()

    res = cli(w, "--json", "events", "relabel", "amy", "--all-candidates")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["relabelled"] == [ids["amy"]] and out["already"] == []
    st = EventStore(w["store"])
    e = st.get(ids["amy"])
    assert (e.kind, e.identity, e.score, e.threshold) == ("unknown", None, 0.3, 0.9)  # the original decision, kept
    assert (e.relabel_name, e.relabel_by) == ("amy", "cli") and e.relabel_score == pytest.approx(cand["score"])
    st.close()
    res = cli(w, "events", "relabel", "amy", "--event", str(ids["amy"]))  # again: nothing changes
    assert res.exit_code == 0 and "0 event(s)" in res.stdout and "1 already were" in res.stdout
    assert json.loads(cli(w, "--json", "events", "relabel", "amy", "--all-candidates").stdout)["relabelled"] == []
    st = EventStore(w["store"])
    assert st.get(ids["amy"]) == e
    st.close()
    assert json.loads(cli(w, "--json", "events", "relabel-candidates", "amy").stdout)["candidates"] == []
    assert "relabelled as amy" in cli(w, "events").stdout


# ----------------------------------------------------------------------------- the HTTP API
@pytest.fixture(scope="module")
def api_world(tmp_path_factory, analyzer, faces_root):
    """amy enrolled (photos 1-4); past unknown faces of amy (photo 5), Madonna, Angelina Jolie and df_c02 (photo 4,
    for the browser test), and a watchlist event; one server for the module."""
    d = tmp_path_factory.mktemp("relabel-api")
    cfg = write_cfg(d / "cfg.yaml", d)
    me = load_config(cfg).embedder_id
    faces = [analyzer.analyze(load_image(photo(faces_root, f"bbt_amy/{i}.jpg")))[0] for i in range(1, 5)]
    with Gallery(d / "gallery", **load_config(cfg).gallery_args()) as g:
        g.enroll("amy", np.stack([f.embedding for f in faces]), crops=[f.crop for f in faces])
    st, snaps = EventStore(d / "events.sqlite"), Snapshots(d / "snapshots")
    ids = {}
    t0 = time.time() - 3600
    for i, (key, rel, kind) in enumerate([("amy", "bbt_amy/5.jpg", "unknown"), ("madonna", "c5_madonna/10.jpg", "unknown"),
                                          ("angelina", "df_angelina/1.jpg", "unknown"), ("c02", "df_c02/4.jpg", "unknown"),
                                          ("watchlist", "bbt_amy/3.jpg", "watchlist")]):
        img = load_image(photo(faces_root, rel))
        f = analyzer.analyze(img)[0]
        cp, fp = snaps.write("door", t0 + i, i, f.crop, img)
        ids[key] = int(st.add(Event(ts=t0 + 60 * i, ts_capture=t0 + 60 * i, camera="door", kind=kind,
                                    identity="zed" if kind == "watchlist" else None, score=0.3, threshold=0.9,
                                    track_id=i, latency_ms=90.0, chip_path=cp, frame_path=fp, embedder=me),
                              embedding=f.embedding).id)
    st.close()
    srv = Server(cfg)
    yield {"dir": d, "url": srv.url, "ids": ids, "srv": srv}
    srv.stop()


@pytest.fixture()
def client(api_world):
    with httpx.Client(base_url=api_world["url"], timeout=60) as c:
        yield c


def test_api_lists_candidates_and_refuses_bad_input(client, api_world):
    ids = api_world["ids"]
    r = client.get("/api/gallery/amy/relabel-candidates")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["person"] == "amy" and body["total"] == 1
    [c] = body["candidates"]
    assert c["event"]["id"] == ids["amy"] and c["score"] >= body["threshold"] and c["event"]["face_url"]
    err(client.get("/api/gallery/ghost/relabel-candidates"), 404, "not_found")
    err(client.get("/api/gallery/a%09b/relabel-candidates"), 400)
    err(client.get("/api/gallery/amy/relabel-candidates", params={"limit": 0}), 400)
    url = "/api/gallery/amy/relabel"
    for body in ({}, {"event_ids": []}, {"event_ids": ["x"]}, {"event_ids": [0]}, {"event_ids": 3}, [1]):
        err(client.post(url, json=body), 400, "bad_request")
    err(client.post(url, content=b"{not json", headers={"content-type": "application/json"}), 400)
    assert "no event with id 424242" == err(client.post(url, json={"event_ids": [ids["amy"], 424242]}), 404, "not_found")
    assert "not an unknown face" in err(client.post(url, json={"event_ids": [ids["watchlist"]]}), 409, "conflict")
    assert "does not match 'amy'" in err(client.post(url, json={"event_ids": [ids["madonna"]]}), 409, "conflict")
    err(client.post("/api/gallery/ghost/relabel", json={"event_ids": [ids["amy"]]}), 404)
    assert client.get(f"/api/events/{ids['amy']}").json()["relabel_name"] is None  # nothing changed


def test_api_relabel_keeps_the_original_decision_and_is_idempotent(client, api_world):
    eid = api_world["ids"]["amy"]
    r = client.post("/api/gallery/amy/relabel", json={"event_ids": [eid]})
    assert r.status_code == 200, r.text
    assert r.json()["relabelled"] == [eid] and r.json()["already"] == []
    [e] = r.json()["events"]
    assert (e["kind"], e["identity"], e["score"]) == ("unknown", None, 0.3)
    assert e["relabel_name"] == "amy" and e["relabel_by"] == "api" and e["relabel_score"] >= 0.5
    r = client.post("/api/gallery/amy/relabel", json={"event_ids": [eid]})
    assert r.json()["relabelled"] == [] and r.json()["already"] == [eid]
    assert client.get(f"/api/events/{eid}").json()["relabel_at"] == e["relabel_at"]
    assert eid in [x["id"] for x in client.get("/api/events", params={"identity": "amy"}).json()["events"]]
    assert client.get("/api/gallery/amy/relabel-candidates").json()["candidates"] == []
    rows = list(csv.DictReader(io.StringIO(client.get("/api/events/export").text)))
    assert {row["id"]: row["relabel_name"] for row in rows}[str(eid)] == "amy"


def test_api_enrolment_by_upload_says_how_many_past_faces_match(client, api_world, faces_root):
    files = [("files", (f"{i}.jpg", photo(faces_root, f"df_angelina/{i}.jpg").read_bytes())) for i in (2, 3)]
    r = client.post("/api/gallery", data={"name": "Angelina"}, files=files)
    assert r.status_code == 200, r.text
    assert r.json()["samples"] == 2 and r.json()["relabel_candidates"] == 1
    [c] = client.get("/api/gallery/Angelina/relabel-candidates").json()["candidates"]
    assert c["event"]["id"] == api_world["ids"]["angelina"]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium")
def test_browser_enrol_offers_the_past_faces_and_the_events_page_shows_the_original(api_world, faces_root, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    uploads = []
    for i in (1, 2, 3):
        uploads.append(tmp_path / f"c02-{i}.jpg")
        uploads[-1].write_bytes(photo(faces_root, f"df_c02/{i}.jpg").read_bytes())
    eid = api_world["ids"]["c02"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = browser.new_page(base_url=api_world["url"])
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto("/#/gallery")
            page.fill("#enroll-name", "Person C02")
            page.set_input_files("#enroll-files", [str(u) for u in uploads])
            page.click("#enroll-form button[type=submit]")
            review = page.locator("#enroll-result .relabel-review")
            expect(review).to_contain_text("1 past unknown event looks like Person C02", timeout=60000)
            review.locator("button.review").click()
            expect(review.locator(f'li[data-event-id="{eid}"]')).to_be_visible(timeout=15000)
            assert review.locator("li").count() == 1
            review.locator("button.accept").click()
            expect(review).to_contain_text("1 event relabelled as Person C02", timeout=15000)
            page.goto("/#/events")
            row = page.locator(f'tr[data-event-id="{eid}"]')
            expect(row.locator(".name")).to_have_text("Person C02", timeout=15000)
            expect(row.locator(".originally")).to_have_text("originally: unknown (score 0.300)")
            expect(row.locator(".tag.relabelled")).to_be_visible()
            assert not errors, errors
        finally:
            browser.close()
    st = EventStore(api_world["dir"] / "events.sqlite")
    e = st.get(eid)
    st.close()
    assert (e.kind, e.identity, e.relabel_name, e.relabel_by) == ("unknown", None, "Person C02", "api")
