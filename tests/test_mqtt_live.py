"""MQTT end to end: ``facewatch run`` (real stages) publishing to a real mosquitto. Alerts raised while the broker
is down are kept in the event store's outbox and arrive once it is up; camera status and availability are
retained; the alert JSON links to the snapshots on the HTTP server and carries no server file paths."""
from __future__ import annotations

from mosquitto import Broker, Subscriber, requires_mosquitto
from test_api import free_port
from test_pipeline import Run, events, live_clip, wait_for, write_config  # noqa: F401 (live_clip is a fixture)


@requires_mosquitto
def test_run_publishes_alerts_status_and_availability_and_loses_nothing_while_the_broker_is_down(
        tmp_path, live_clip, astro_gallery):
    broker = Broker(tmp_path / "broker", persistence=True)  # not started yet: the broker is down at first
    api_port = free_port()
    cfg = write_config(tmp_path / "cfg.yaml", tmp_path, astro_gallery,
                       [{"name": "gate", "source": str(live_clip), "fps": 8, "replay": True}],
                       alerts={"cooldown_s": 0, "sinks": {"console": True, "mqtt": {
                           "port": broker.port, "prefix": "fw", "reconnect_min_s": 0.2, "reconnect_max_s": 1,
                           "ack_timeout_s": 2, "discovery": True}}, "delivery": {"backoff_s": 0.2, "max_backoff_s": 1}},
                       api={"port": api_port, "public_url": f"http://127.0.0.1:{api_port}"})
    run = Run(cfg)
    try:
        store = tmp_path / "events.sqlite"
        wait_for(lambda: len(events(store)) >= 2, 90, "two alerts stored while the broker is down")
        assert all(e["deliveries"]["mqtt"] == "pending" for e in events(store))
        broker.start()
        sub = Subscriber(broker, "#", persistent=False).start()
        try:
            wait_for(lambda: all(e["deliveries"].get("mqtt") == "delivered" for e in events(store)[:2]), 60,
                     "the alerts raised while the broker was down being delivered")
            ids = {e["id"] for e in events(store)}
            # retained messages and every alert published after the subscriber joined
            wait_for(lambda: sub.on("fw/gate/alert"), 30, "an alert on fw/gate/alert")
            a = sub.on("fw/gate/alert")[0].json()
            assert a["identity"] == "astronaut" and a["camera"] == "gate" and a["id"] in ids
            assert a["face_url"] == f"http://127.0.0.1:{api_port}/api/events/{a['id']}/face.jpg"
            assert "chip_path" not in a and "frame_path" not in a
            assert sub.wait_for("fw/available").text == "online"
            status = sub.wait_for("fw/gate/status").json()
            assert status["camera"] == "gate" and status["online"] is True
            assert sub.wait_for("homeassistant/sensor/facewatch_gate/last_identity/config").json()["state_topic"] == \
                "fw/gate/last_identity"
        finally:
            sub.close()
    finally:
        code = run.stop()
    assert code == 0, run.text()[-3000:]
    # after a clean stop the broker holds "offline" as the retained availability
    late = Subscriber(broker, "fw/available").start()
    try:
        assert late.wait_for("fw/available").text == "offline"
    finally:
        late.close()
        broker.stop()
    assert "Traceback" not in run.text()
