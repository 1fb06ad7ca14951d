"""The event index (search by face, visitor groups), the unknown-face gate, and the event store's migration of
files written by older versions: real SQLite files, real hnswlib indexes."""
from __future__ import annotations

import json
import os
import sqlite3
import time

import numpy as np
import pytest

from stream.pipeline.decisions import UnknownGate
from stream.records import Event
from stream.store.event_index import EventIndex, visitor_id
from stream.store.events import EventFilter, EventStore


def unit(rng: np.random.Generator, n: int = 1) -> np.ndarray:
    v = rng.normal(size=(n, 128)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def add(store: EventStore, emb: np.ndarray | None, kind: str = "unknown", unknown_id: int | None = None) -> int:
    t = time.time()
    e = store.add(Event(ts=t, ts_capture=t, camera="c", kind=kind, identity=None if kind == "unknown" else "x",
                        score=0.5, threshold=0.9, track_id=1, latency_ms=10.0, unknown_id=unknown_id), embedding=emb)
    return int(e.id)


@pytest.fixture()
def store(tmp_path):
    s = EventStore(tmp_path / "events.sqlite")
    yield s
    s.close()


def test_search_finds_the_nearest_events_and_keeps_up_with_new_ones(store):
    rng = np.random.default_rng(1)
    vecs = unit(rng, 200)
    ids = [add(store, v) for v in vecs]
    add(store, None)  # an event without a face is simply not indexed
    ix = EventIndex(store)
    assert len(ix) == 200
    for i in (0, 57, 199):
        (best, sim), *_ = ix.search(vecs[i], k=3)
        assert best == ids[i] and sim == pytest.approx(1.0, abs=1e-4)
    noisy = vecs[10] + 0.05 * unit(rng)[0]
    assert ix.search(noisy, k=1)[0][0] == ids[10]
    assert all(e != ids[10] for e, _ in ix.search(vecs[10], k=5, exclude=ids[10]))
    assert ix.search(vecs[3], k=5, min_similarity=0.9) == [(ids[3], pytest.approx(1.0, abs=1e-4))]
    new = unit(rng)[0]
    nid = add(store, new)
    assert ix.search(new, k=1)[0][0] != nid  # not yet synced
    assert ix.sync() == 1 and ix.search(new, k=1)[0][0] == nid
    many = unit(rng, 2000)  # grows past the initial capacity
    for v in many:
        add(store, v)
    assert ix.sync() == 2000 and len(ix) == 2201


def test_persisted_owner_only_and_rebuilt_when_missing_corrupt_or_stale(store):
    rng = np.random.default_rng(2)
    vecs = unit(rng, 50)
    ids = [add(store, v) for v in vecs]
    ix = EventIndex(store)
    ix.save()
    assert ix.path.exists() and ix.meta_path.exists()
    assert ix.path.stat().st_mode & 0o077 == 0 and ix.meta_path.stat().st_mode & 0o077 == 0
    loaded = EventIndex(store)
    assert loaded.max_id == ids[-1] and loaded.search(vecs[7], k=1)[0][0] == ids[7]
    # stale: events added after the save are found after reopening
    extra = unit(rng)[0]
    eid = add(store, extra)
    assert EventIndex(store).search(extra, k=1)[0][0] == eid
    # missing, corrupt or lying metadata: rebuilt from the store, same answers
    ix.path.unlink()
    assert EventIndex(store).search(vecs[9], k=1)[0][0] == ids[9]
    ix.save()
    ix.path.write_bytes(b"garbage" * 10)
    assert EventIndex(store).search(vecs[11], k=1)[0][0] == ids[11]
    ix.meta_path.write_text("{not json")
    assert EventIndex(store).search(vecs[12], k=1)[0][0] == ids[12]
    ix.meta_path.write_text(json.dumps({"dim": 128, "max_id": ids[-1], "count": 3}))
    assert len(EventIndex(store)) == 51


def test_a_long_rebuild_reports_progress_between_chunks(store, monkeypatch):
    import stream.store.event_index as ei

    monkeypatch.setattr(ei, "CHUNK", 100)
    rng = np.random.default_rng(4)
    vecs = unit(rng, 450)
    ids = [add(store, v) for v in vecs]
    beats: list[int] = []
    ix = EventIndex(store, on_progress=lambda: beats.append(1))
    assert len(beats) == 5 and len(ix) == 450 and ix.search(vecs[420], k=1)[0][0] == ids[420]
    add(store, unit(rng)[0])
    assert ix.sync() == 1 and len(beats) == 5  # a small sync does not report


def test_visitor_ids_group_the_same_unknown_face(store):
    rng = np.random.default_rng(3)
    a, b = unit(rng, 2)
    ix = EventIndex(store)
    first = visitor_id(store, ix, a, 0.9)
    add(store, a, unknown_id=first)
    again = visitor_id(store, ix, a + 0.02 * unit(rng)[0], 0.9)
    assert again == first
    add(store, a, unknown_id=again)
    other = visitor_id(store, ix, b, 0.9)
    assert other != first
    add(store, b, unknown_id=other)
    # a known person's event that looks like ``b`` does not make a new face join b's group by itself
    c = unit(rng)[0]
    add(store, c, kind="watchlist")
    assert visitor_id(store, ix, c, 0.9) not in (first, other)
    assert visitor_id(store, ix, None, 0.9) is None
    vs = {v.unknown_id: v.count for v in store.visitors()}
    assert vs == {first: 2, other: 1}


def test_unknown_gate():
    gate = UnknownGate({"door": 100}, default_min_face=80, min_sharpness=40.0)
    assert gate.reason("door", [0, 0, 99, 150], 100.0) == "small"
    assert gate.reason("door", [0, 0, 100, 150], 100.0) is None
    assert gate.reason("yard", [0, 0, 79, 79], 100.0) == "small"
    assert gate.reason("yard", [0, 0, 80, 80], 100.0) is None
    assert gate.reason("yard", [0, 0, 200, 200], 39.9) == "blurred"
    assert gate.reason("yard", [0, 0, 200, 200], None) is None


OLD_SCHEMA = """
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, ts_capture REAL NOT NULL,
  camera TEXT NOT NULL, kind TEXT NOT NULL, identity TEXT, score REAL NOT NULL, threshold REAL NOT NULL,
  track_id INTEGER NOT NULL, latency_ms REAL NOT NULL, box TEXT, chip_path TEXT, frame_path TEXT,
  webhook_state TEXT NOT NULL DEFAULT 'none', webhook_attempts INTEGER NOT NULL DEFAULT 0);
CREATE INDEX events_ts ON events(ts);
CREATE TABLE camera_status (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, camera TEXT NOT NULL,
  online INTEGER NOT NULL, detail TEXT);
"""


def test_an_old_event_store_is_migrated_keeping_every_event_and_pending_delivery(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    for i, state in enumerate(["delivered", "pending", "none"]):
        db.execute("INSERT INTO events (ts, ts_capture, camera, kind, identity, score, threshold, track_id, latency_ms, "
                   "box, webhook_state) VALUES (?, ?, 'door', 'watchlist', 'ann', 0.97, 0.95, ?, 120.0, '[1, 2, 3, 4]', ?)",
                   (100.0 + i, 99.0 + i, i, state))
    db.commit()
    db.close()
    os.chmod(path, 0o600)
    store = EventStore(path)
    evs, total = store.query(EventFilter(), limit=10)
    assert total == 3 and [e.id for e in evs] == [3, 2, 1] and evs[0].box == [1, 2, 3, 4] and evs[0].source == "live"
    assert {d["sink"]: d["state"] for d in store.delivery_states(2)} == {"webhook": "pending"}
    assert store.delivery_states(3) == []
    # the migrated file takes what the new version writes: events without latency (recorded video), embeddings
    nid = store.add(Event(ts=200.0, ts_capture=200.0, camera="clip", kind="unknown", score=0.1, threshold=0.95,
                          track_id=9, latency_ms=None, source="scan", video_file="v.mp4", video_time=3.5),
                    embedding=np.ones(128, np.float32) / np.sqrt(128)).id
    assert nid == 4 and store.get(4).video_time == 3.5 and store.embedding(4) is not None
    store.close()
    again = EventStore(path)  # opening a migrated file again changes nothing
    assert again.query(EventFilter(), limit=10)[1] == 4
    again.close()
