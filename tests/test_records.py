"""One ``Event`` type from the alert stage through the store to every sink; one ``ScanReport`` type."""
from __future__ import annotations

import json
import stat

import pytest
import zmq
from pydantic import ValidationError

from stream.outputs.jsonl import JsonlSink
from stream.outputs.zmq_pub import ZmqPubSink
from stream.records import Event, ScanReport
from stream.store.events import COLUMNS, EventStore


def event(**change) -> Event:
    base = dict(ts=1000.5, ts_capture=1000.4, camera="door", kind="watchlist", identity="alice", score=0.95,
                threshold=0.93, track_id=7, latency_ms=100.0, box=[1.0, 2.0, 30.0, 40.0], chip_path="/s/f.jpg",
                frame_path="/s/fr.jpg")
    return Event(**{**base, **change})


def test_store_round_trip_keeps_every_field(tmp_path):
    store = EventStore(tmp_path / "events.sqlite")
    stored = store.add(event(), sinks=["webhook"])
    assert stored.id == 1 and stored.deliveries == {"webhook": "pending"}
    again = store.events()
    assert again == [stored]
    assert stat.S_IMODE((tmp_path / "events.sqlite").stat().st_mode) == 0o600
    store.mark_delivered(1, "webhook")
    assert store.events()[0].deliveries == {"webhook": "delivered"} and store.due("webhook") == []
    unknown = store.add(event(kind="unknown", identity=None, box=None))
    assert store.events()[1] == unknown and unknown.identity is None and unknown.deliveries == {}


def test_table_columns_are_the_record_fields():
    assert COLUMNS == tuple(f for f in Event.model_fields if f != "deliveries")


def test_public_form_has_no_delivery_bookkeeping():
    pub = event(id=3).public()
    assert pub["id"] == 3 and pub["identity"] == "alice"
    assert "deliveries" not in event(id=3, deliveries={"webhook": "failed"}).public()
    assert "webhook_state" not in pub and "deliveries" not in pub


def test_jsonl_and_zmq_sinks_send_the_public_form(tmp_path):
    e = event(id=5)
    sink = JsonlSink(tmp_path / "a.jsonl")
    sink.send(e)
    sink.send(e)
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert [json.loads(ln) for ln in lines] == [e.public(), e.public()]
    assert stat.S_IMODE((tmp_path / "a.jsonl").stat().st_mode) == 0o600
    ctx = zmq.Context()
    try:
        pub = ZmqPubSink(ctx, "inproc://alerts")
        sub = ctx.socket(zmq.SUB)
        sub.connect("inproc://alerts")
        sub.setsockopt(zmq.SUBSCRIBE, b"alert")
        for _ in range(50):  # a SUB joins asynchronously: send until it hears one
            pub.send(e)
            if sub.poll(20):
                break
        topic, body = sub.recv_multipart()
        assert topic == b"alert" and json.loads(body) == e.public()
    finally:
        ctx.destroy(linger=0)


def test_console_line_names_who_where_and_score():
    line = event().console_line()
    assert line.startswith("ALERT watchlist: alice on camera door") and "score 0.9500" in line
    assert "UNKNOWN face" in event(kind="unknown", identity=None).console_line()


@pytest.mark.parametrize("bad", [dict(kind="observation"), dict(deliveries={"webhook": "lost"}),
                                 dict(webhook_state="pending"), dict(surprise=1)])
def test_bad_events_are_refused(bad):
    with pytest.raises(ValidationError):
        event(**bad)


def test_scan_report_round_trips():
    rep = ScanReport.model_validate({"videos": [{"file": "a.mp4", "camera": "a", "status": "complete", "frames_expected": 3,
                                                 "frames_decoded": 3, "frames_processed": 3, "events": [
        {"kind": "watchlist", "identity": "x", "score": 0.9, "threshold": 0.8, "video_time": 1.0, "frame_index": 25,
         "track_id": 1, "track_start": 0.9, "box": [0, 0, 1, 1]}],
        "appearances": {"x": {"first_seen": 0.9, "last_seen": 1.5, "best_score": 0.9}}}]})
    assert ScanReport.model_validate_json(rep.model_dump_json()) == rep
    assert rep.videos[0].human_lines()[0] == "a.mp4: complete, 3 of 3 frames decoded, 3 processed"
