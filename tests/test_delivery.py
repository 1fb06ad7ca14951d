"""Durable alert delivery through the event store's outbox: real SQLite files, real HTTP receivers on 127.0.0.1,
real worker threads, the real CLI. Backoffs are tens of milliseconds, so each test takes a second or two."""
from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import logging
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
import yaml
from click.testing import CliRunner

from stream.cli import main
from stream.config import Config, DeliveryConfig, WebhookConfig
from stream.outputs.delivery import DeliveryWorker
from stream.outputs.jsonl import JsonlSink
from stream.outputs.prometheus import serve
from stream.outputs.webhook import SIGNATURE_HEADER, WebhookSink
from stream.records import Event
from stream.store.events import EventStore, EventStoreError

SECRET = b"outbox-secret"
FAST = dict(backoff_s=0.05, max_backoff_s=0.1, give_up_after_s=60.0, concurrency=4)


# ----------------------------------------------------------------------------- helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Receiver:
    """A webhook receiver on 127.0.0.1:``port``: answers ``statuses`` in turn (then 204), sleeps ``hang_s`` on the
    events in ``hang_ids``, and records what it accepted."""

    def __init__(self, port: int = 0, statuses: list[int] | None = None, hang_ids: set[int] | None = None,
                 hang_s: float = 0.0) -> None:
        self.accepted: list[tuple[dict, str | None, bytes]] = []
        self.requests = 0
        self.statuses = list(statuses or [])
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                payload = json.loads(body)
                rec.requests += 1
                if hang_ids and payload["id"] in hang_ids:
                    time.sleep(hang_s)
                status = rec.statuses.pop(0) if rec.statuses else 204
                if 200 <= status < 300:
                    rec.accepted.append((payload, self.headers.get(SIGNATURE_HEADER), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.srv.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def ids(self) -> list[int]:
        return sorted(p["id"] for p, _, _ in self.accepted)

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


def signed_ok(sig: str | None, body: bytes) -> bool:
    return sig == "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()


def alert(i: int = 0, ts: float | None = None) -> Event:
    now = time.time() if ts is None else ts
    return Event(ts=now, ts_capture=now - 0.1, camera="door", kind="watchlist", identity=f"person{i}", score=0.95,
                 threshold=0.93, track_id=i, latency_ms=100.0, box=[1.0, 2.0, 30.0, 40.0])


def webhook(url: str, timeout_s: float = 2.0) -> WebhookSink:
    return WebhookSink(WebhookConfig(url=url, secret_env="FW_OUTBOX_SECRET", timeout_s=timeout_s))


def state(store: EventStore, event_id: int, sink: str = "webhook") -> dict:
    return next(d for d in store.delivery_states(event_id) if d["sink"] == sink)


@pytest.fixture(autouse=True)
def secret(monkeypatch):
    monkeypatch.setenv("FW_OUTBOX_SECRET", SECRET.decode())


@pytest.fixture()
def workers():
    """Start DeliveryWorkers; every one is stopped and joined at the end of the test."""
    started: list[DeliveryWorker] = []

    def start(store_path: Path, name: str, sink, poll_s: float = 0.1, **delivery) -> DeliveryWorker:
        w = DeliveryWorker(store_path, name, sink, DeliveryConfig(**{**FAST, **delivery}), poll_s=poll_s)
        w.start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()
    for w in started:
        w.join(5)
        assert not w.is_alive(), f"worker {w.name} did not stop"


def write_config(tmp_path: Path, store: Path) -> Path:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(tmp_path), "alerts": {"store": str(store)}}))
    return cfg


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


# ----------------------------------------------------------------------------- delivery
def test_outage_then_recovery_delivers_every_event_exactly_once_signed(tmp_path, workers):
    path, port = tmp_path / "events.sqlite", free_port()  # nothing listens on port yet: the receiver is down
    store = EventStore(path)
    w = workers(path, "webhook", webhook(f"http://127.0.0.1:{port}/hook"))
    ids = []
    for i in range(5):
        ids.append(store.add(alert(i), sinks=["webhook"]).id)
        w.wake()
    wait_for(lambda: all(state(store, i)["attempts"] >= 2 for i in ids), 5, "two failed tries of every event")
    assert {state(store, i)["state"] for i in ids} == {"pending"}
    assert "Connection refused" in state(store, ids[0])["last_error"]
    rec = Receiver(port)  # the receiver comes back on the same port
    try:
        wait_for(lambda: rec.ids() == ids, 5, "every event delivered after the outage")
        wait_for(lambda: all(state(store, i)["state"] == "delivered" for i in ids), 2, "states delivered")
        time.sleep(0.3)  # later polls must not send anything again
        assert rec.ids() == ids and rec.requests == 5
        assert all(signed_ok(sig, body) and json.loads(body) == p for p, sig, body in rec.accepted)
        assert [p for p, _, _ in sorted(rec.accepted, key=lambda a: a[0]["id"])] == [e.public() for e in store.events()]
        assert w.delivered == 5 and w.given_up == 0
    finally:
        rec.close()


def test_http_500_is_retried_until_2xx(tmp_path, workers):
    path = tmp_path / "events.sqlite"
    rec = Receiver(statuses=[500, 500])
    try:
        store = EventStore(path)
        e = store.add(alert(), sinks=["webhook"])
        workers(path, "webhook", webhook(rec.url)).wake()
        wait_for(lambda: state(store, e.id)["state"] == "delivered", 5, "delivery after two HTTP 500")
        d = state(store, e.id)
        assert d["attempts"] == 3 and d["last_error"] is None and rec.requests == 3 and rec.ids() == [e.id]
        assert store.events()[0].deliveries == {"webhook": "delivered"}
    finally:
        rec.close()


def test_a_dead_receiver_delays_neither_another_sink_nor_the_next_alert(tmp_path, workers):
    path = tmp_path / "events.sqlite"
    black_hole = socket.socket()  # accepts connections, never answers: every try waits for the full timeout
    black_hole.bind(("127.0.0.1", 0))
    black_hole.listen(16)
    live = Receiver()
    try:
        store = EventStore(path)
        sinks = {"webhook": webhook(f"http://127.0.0.1:{black_hole.getsockname()[1]}/hook", timeout_s=3.0),
                 "closed": webhook(f"http://127.0.0.1:{free_port()}/hook"),
                 "jsonl": JsonlSink(tmp_path / "alerts.jsonl"), "hook2": webhook(live.url)}
        ws = [workers(path, name, sink) for name, sink in sinks.items()]
        for i in range(2):  # the second alert arrives while the first is stuck on the dead receiver
            t0 = time.monotonic()
            e = store.add(alert(i), sinks=list(sinks))
            for w in ws:
                w.wake()
            wait_for(lambda: store.events()[-1].deliveries["jsonl"] == store.events()[-1].deliveries["hook2"]
                     == "delivered", 1.0, f"alert {i} on the live sinks")
            assert time.monotonic() - t0 < 1.0
            assert store.events()[-1].deliveries["webhook"] == "pending"
        assert live.ids() == [1, 2]
        lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
        assert [json.loads(ln)["id"] for ln in lines] == [1, 2]
        assert state(store, 1, "closed")["attempts"] >= 1 and state(store, 1, "closed")["state"] == "pending"
    finally:
        live.close()
        black_hole.close()


def test_a_slow_delivery_does_not_hold_up_the_next_alert_on_the_same_sink(tmp_path, workers):
    path = tmp_path / "events.sqlite"
    rec = Receiver(hang_ids={1}, hang_s=1.5)
    try:
        store = EventStore(path)
        w = workers(path, "webhook", webhook(rec.url, timeout_s=5.0), concurrency=2)
        store.add(alert(1), sinks=["webhook"])
        w.wake()
        wait_for(lambda: rec.requests == 1, 2, "the first delivery to be in flight")
        t0 = time.monotonic()
        store.add(alert(2), sinks=["webhook"])
        w.wake()
        wait_for(lambda: state(store, 2)["state"] == "delivered", 1.0, "the second alert while the first hangs")
        assert time.monotonic() - t0 < 1.0 and state(store, 1)["state"] == "pending"
        wait_for(lambda: state(store, 1)["state"] == "delivered", 3, "the slow one too")
        assert rec.ids() == [1, 2]
    finally:
        rec.close()


def test_give_up_is_logged_once_then_redeliver_sends_it(tmp_path, workers, caplog):
    caplog.set_level(logging.INFO, logger="stream.outputs.delivery")
    path, port = tmp_path / "events.sqlite", free_port()
    store = EventStore(path)
    e = store.add(alert(), sinks=["webhook"])
    w = workers(path, "webhook", webhook(f"http://127.0.0.1:{port}/hook"), give_up_after_s=0.4)
    w.wake()
    wait_for(lambda: state(store, e.id)["state"] == "failed", 5, "the delivery to be given up")
    d = state(store, e.id)
    assert d["attempts"] >= 3 and "Connection refused" in d["last_error"]
    messages = [r.getMessage() for r in caplog.records if r.name == "stream.outputs.delivery"]
    give_ups = [m for m in messages if m.startswith(f"giving up on delivery of event {e.id} to webhook after ")]
    assert len(give_ups) == 1 and give_ups[0].count("Connection refused") == 1
    assert len([m for m in messages if m.startswith(f"delivery of event {e.id} to webhook failed")]) == 1  # not per try
    assert w.given_up == 1 and w.try_failures == d["attempts"]
    assert store.delivery_stats()["webhook"]["failed"] == 1
    time.sleep(0.3)
    assert state(store, e.id)["attempts"] == d["attempts"]  # failed means no more tries

    rec = Receiver(port)
    try:
        cfg = write_config(tmp_path, path)
        r = cli("events", "redeliver", "--failed", "-c", str(cfg))
        assert r.exit_code == 0, r.output
        assert r.output.startswith("1 delivery reset to pending")
        wait_for(lambda: rec.ids() == [e.id], 3, "the redelivered event")  # the running worker's poll finds it
        wait_for(lambda: state(store, e.id)["state"] == "delivered", 2, "state delivered")
        r = cli("events", "--json", "-c", str(cfg))
        assert r.exit_code == 0 and json.loads(r.output)["events"][0]["deliveries"] == {"webhook": "delivered"}
        r = cli("events", "-c", str(cfg))
        assert r.exit_code == 0 and r.output.rstrip().endswith("deliveries: webhook=delivered")
        r = cli("events", "redeliver", "--failed", "--json", "-c", str(cfg))
        assert r.exit_code == 0 and json.loads(r.output) == {"reset": 0}
        assert rec.requests == 1
    finally:
        rec.close()


def test_a_restarted_worker_sends_what_the_previous_one_left_pending(tmp_path, workers):
    path = tmp_path / "events.sqlite"
    store = EventStore(path)
    first = workers(path, "webhook", webhook(f"http://127.0.0.1:{free_port()}/hook"), backoff_s=0.4, max_backoff_s=0.4)
    ids = [store.add(alert(i), sinks=["webhook"]).id for i in range(3)]
    first.wake()
    wait_for(lambda: all(state(store, i)["attempts"] == 1 for i in ids), 3, "one failed try each")
    first.stop()
    first.join(5)
    assert not first.is_alive() and {state(store, i)["state"] for i in ids} == {"pending"}
    assert all(state(store, i)["attempts"] == 1 for i in ids)  # the stopped worker tried no more
    rec = Receiver()
    try:
        workers(path, "webhook", webhook(rec.url))  # the restart: it keeps the schedule (next try 0.4 s on)
        wait_for(lambda: all(state(store, i)["state"] == "delivered" for i in ids), 3, "the pending events delivered")
        assert rec.ids() == ids and rec.requests == 3
        assert all(state(store, i)["attempts"] == 2 for i in ids)
    finally:
        rec.close()


def test_a_restart_picks_up_due_entries_without_being_woken(tmp_path, workers):
    path = tmp_path / "events.sqlite"
    rec = Receiver()
    try:
        store = EventStore(path)
        ids = [store.add(alert(i), sinks=["webhook"]).id for i in range(2)]  # stored by a run that then died
        workers(path, "webhook", webhook(rec.url))  # never woken: the start itself looks at the outbox
        wait_for(lambda: rec.ids() == ids, 3, "what the previous run left pending")
    finally:
        rec.close()


# ----------------------------------------------------------------------------- the store
def test_event_and_deliveries_are_stored_together_or_not_at_all(tmp_path):
    store = EventStore(tmp_path / "events.sqlite")
    with pytest.raises(EventStoreError, match="events.sqlite"):
        store.add(alert(), sinks=["webhook", object()])  # the second outbox row cannot be written
    assert store.events() == [] and store.delivery_stats() == {}
    e = store.add(alert(), sinks=["jsonl", "webhook", "jsonl"])
    assert e.deliveries == {"jsonl": "pending", "webhook": "pending"}
    assert store.events() == [e]


def test_delivery_stats_count_states_and_the_oldest_pending(tmp_path):
    store = EventStore(tmp_path / "events.sqlite")
    ids = [store.add(alert(i), sinks=["webhook", "jsonl"]).id for i in range(3)]
    store.mark_delivered(ids[0], "webhook")
    store.mark_failed(ids[1], "webhook", "HTTP 503")
    for i in ids:
        store.mark_delivered(i, "jsonl")
    stats = store.delivery_stats(now=time.time() + 10)
    assert {k: stats["webhook"][k] for k in ("pending", "delivered", "failed")} == {"pending": 1, "delivered": 1,
                                                                                 "failed": 1}
    assert 10 <= stats["webhook"]["oldest_pending_s"] < 12
    assert stats["jsonl"] == {"pending": 0, "delivered": 3, "failed": 0, "oldest_pending_s": 0.0}
    assert [d.event.id for d in store.due("webhook")] == [ids[2]]


def test_an_old_store_file_opens_and_its_pending_webhooks_join_the_outbox(tmp_path):
    path = tmp_path / "events.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, ts_capture REAL NOT NULL,
            camera TEXT NOT NULL, kind TEXT NOT NULL, identity TEXT, score REAL NOT NULL, threshold REAL NOT NULL,
            track_id INTEGER NOT NULL, latency_ms REAL NOT NULL, box TEXT, chip_path TEXT, frame_path TEXT,
            webhook_state TEXT NOT NULL DEFAULT 'none', webhook_attempts INTEGER NOT NULL DEFAULT 0);
        INSERT INTO events (ts, ts_capture, camera, kind, identity, score, threshold, track_id, latency_ms,
            webhook_state, webhook_attempts) VALUES (100, 99.9, 'door', 'watchlist', 'ann', 0.95, 0.93, 1, 100, 'pending', 3),
            (101, 100.9, 'door', 'unknown', NULL, 0.5, 0.93, 2, 100, 'none', 0);
    """)
    db.commit()
    db.close()
    store = EventStore(path)
    old = store.events()
    assert [e.deliveries for e in old] == [{"webhook": "pending"}, {}]
    new = store.add(alert(), sinks=["webhook"])
    assert new.id == 3 and store.events()[-1] == new
    assert [d.event.id for d in store.due("webhook")] == [1, 3]
    store.close()
    assert [e.deliveries for e in EventStore(path).events()] == [{"webhook": "pending"}, {}, {"webhook": "pending"}]


def test_a_corrupt_store_is_one_clear_error(tmp_path):
    path = tmp_path / "events.sqlite"
    path.write_bytes(b"this is not an sqlite file at all" * 100)
    with pytest.raises(EventStoreError, match=f"^{path}: not a usable event store"):
        EventStore(path)
    r = cli("events", "-c", str(write_config(tmp_path, path)))
    assert r.exit_code == 2 and r.output.count("\n") == 1 and str(path) in r.output and "Traceback" not in r.output


# ----------------------------------------------------------------------------- the CLI's errors
def test_events_cli_errors_are_one_line_exit_2(tmp_path):
    path = tmp_path / "events.sqlite"
    cfg = str(write_config(tmp_path, path))
    for args in (["events"], ["events", "redeliver", "--failed"]):
        r = cli(*args, "-c", cfg)
        assert r.exit_code == 2 and r.output == f"facewatch: error: no event store at {path} (alerts.store)\n"
    assert not path.exists()  # looking did not create it
    store = EventStore(path)
    store.add(alert(), sinks=["webhook"])
    store.mark_failed(1, "webhook", "HTTP 500")
    r = cli("events", "redeliver", "--id", "1", "--id", "99", "--id", "7", "-c", cfg)
    assert r.exit_code == 2 and r.output == f"facewatch: error: {path}: no event with id 7, 99\n"
    assert state(store, 1)["state"] == "failed"  # nothing changed
    r = cli("events", "redeliver", "-c", cfg)
    assert r.exit_code == 2 and "--id N" in r.output and r.output.count("\n") == 1
    r = cli("events", "redeliver", "--id", "1", "-c", cfg)
    assert r.exit_code == 0 and r.output.startswith("1 delivery reset to pending")
    assert state(store, 1)["state"] == "pending" and state(store, 1)["attempts"] == 0


# ----------------------------------------------------------------------------- metrics
def test_metrics_server_answers_metrics_only_with_delivery_state(tmp_path):
    from stream.pipeline.alert import AlertStage
    from stream.pipeline.stage import StageSpec
    from stream.pipeline.supervisor import Child

    alert_child = Child(spec=StageSpec(AlertStage, config={}, endpoints={}), name="alert", metrics={
        "alerts": 4, "delivery:webhook:pending": 2, "delivery:webhook:delivered": 1, "delivery:webhook:failed": 1,
        "delivery:webhook:oldest_pending_s": 12.5, "delivery:webhook:given_up": 1, "delivery:webhook:try_failures": 9})
    httpd = serve(SimpleNamespace(children=[alert_child]), "127.0.0.1", 0)
    base = f"http://127.0.0.1:{httpd.server_port}"
    try:
        for path in ("/", "/foo", "/metrics/x"):
            r = requests.get(base + path, timeout=5)
            assert r.status_code == 404 and "facewatch_" not in r.text
        r = requests.get(base + "/metrics", timeout=5)
        assert r.status_code == 200
        for line in ('facewatch_deliveries{sink="webhook",state="pending"} 2.0',
                     'facewatch_deliveries{sink="webhook",state="failed"} 1.0',
                     'facewatch_delivery_oldest_pending_seconds{sink="webhook"} 12.5',
                     'facewatch_delivery_given_up_total{sink="webhook"} 1.0',
                     'facewatch_alerts_total{stage="alert"} 4.0'):
            assert line in r.text.splitlines(), line
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_alert_stage_stores_outbox_entries_and_reports_delivery_metrics(tmp_path):
    """The real alert stage: one outbox entry per configured sink (not the console), delivered by its workers,
    counted in its heartbeat counters."""
    from stream.pipeline.alert import AlertStage
    from stream.pipeline.messages import Decision
    from stream.pipeline.stage import StageSpec

    rec = Receiver()
    cfg = Config.model_validate({"data_dir": str(tmp_path), "alerts": {
        "cooldown_s": 0, "sinks": {"console": False, "jsonl": "alerts.jsonl", "webhook": {"url": rec.url}},
        "delivery": FAST}}).model_dump(mode="json")
    endpoints = {"decisions": f"tcp://127.0.0.1:{free_port()}", "control": f"tcp://127.0.0.1:{free_port()}"}
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    stage = AlertStage(StageSpec(AlertStage, config=cfg, endpoints=endpoints))
    try:
        stage.on_decision(Decision(camera="door", ts_capture=time.time(), track_id=1, identity="ann", score=0.95,
                                   threshold=0.93, kind="watchlist", box=[1, 2, 3, 4]))
        wait_for(lambda: rec.ids() == [1], 3, "the webhook delivery")
        wait_for(lambda: stage.store.events()[0].deliveries == {"jsonl": "delivered", "webhook": "delivered"}, 3,
                 "both deliveries recorded")
        stage.delivery_metrics(force=True)
        c = stage.metrics.counters
        assert c["delivery:webhook:delivered"] == 1 and c["delivery:jsonl:delivered"] == 1
        assert c["delivery:webhook:pending"] == 0 and c["delivery:webhook:oldest_pending_s"] == 0.0
        assert "delivery:console:delivered" not in c
    finally:
        stage.close()
        signal.signal(signal.SIGTERM, handlers[0])
        signal.signal(signal.SIGINT, handlers[1])
        rec.close()
    assert not any(w.is_alive() for w in stage.workers)
