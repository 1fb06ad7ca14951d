"""MQTT sink against a real Mosquitto broker and real paho clients (no mocks): alerts and their links, availability
and the last will, camera status, outages (send fails, then the outbox delivers everything), authentication, TLS,
Home Assistant discovery and config validation. Skipped only when /usr/sbin/mosquitto is missing."""
from __future__ import annotations

import itertools
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from mosquitto import Broker, Message, Subscriber, make_tls, requires_mosquitto, running_broker

from stream.config import ConfigError, DeliveryConfig, MqttConfig, MqttTlsConfig, load_config
from stream.outputs.delivery import DeliveryWorker
from stream.outputs.mqtt import MqttError, MqttPublisher
from stream.records import Event
from stream.store.events import EventStore

pytestmark = [requires_mosquitto, pytest.mark.timeout(60)]

REPO = Path(__file__).resolve().parent.parent
PREFIX = "fw"
_ids = itertools.count(1)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with running_broker(tmp_path / "broker") as b:
        yield b


def mqtt_cfg(broker: Broker, **kw: Any) -> MqttConfig:
    values: dict[str, Any] = dict(host=broker.host, port=broker.port, prefix=PREFIX, client_id=f"fw-test-{next(_ids)}",
                                  ack_timeout_s=2.0, reconnect_min_s=0.1, reconnect_max_s=0.5)
    return MqttConfig(**{**values, **kw})


@contextmanager
def publisher(cfg: MqttConfig, cameras: tuple[str, ...] = ("cam1",), public_url: str | None = None,
              connect: bool = True) -> Iterator[MqttPublisher]:
    p = MqttPublisher(cfg, list(cameras), public_url)
    p.start()
    try:
        if connect:
            assert p.wait_connected(10), "publisher did not connect"
        yield p
    finally:
        p.close()


def event(event_id: int | None = 1, camera: str = "cam1", identity: str | None = "alice", ts: float | None = None,
          snapshots: bool = True) -> Event:
    now = time.time() if ts is None else ts
    return Event(id=event_id, ts=now, ts_capture=now - 0.2, camera=camera, kind="watchlist" if identity else "unknown",
                 identity=identity, score=0.97, threshold=0.95, track_id=3, latency_ms=200.0, box=[1.0, 2.0, 30.0, 40.0],
                 chip_path="/srv/facewatch/snapshots/cam1/x-face.jpg" if snapshots else None,
                 frame_path="/srv/facewatch/snapshots/cam1/x-frame.jpg" if snapshots else None)


def wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout} s")
        time.sleep(0.05)


def retained(broker: Broker, topic: str) -> Message:
    """What a subscriber that connects now gets on ``topic``: it must be a retained message."""
    with Subscriber(broker) as sub:
        m = sub.wait_for(topic, timeout=5)
    assert m.retain, f"{topic}: {m.text!r} is not retained"
    return m


def alert_ids(sub: Subscriber, camera: str = "cam1") -> list[int]:
    return [m.json()["id"] for m in sub.on(f"{PREFIX}/{camera}/alert")]


# ---------------------------------------------------------------------- alerts
def test_alert_published_with_links_and_without_file_paths(broker: Broker) -> None:
    with Subscriber(broker) as sub, publisher(mqtt_cfg(broker), public_url="https://fw.example:8443/") as p:
        e = event(41)
        p.send(e)  # returns only once the broker acknowledged it
        msg = sub.wait_for(f"{PREFIX}/cam1/alert")
        body = msg.json()
        assert msg.qos == 1 and not msg.retain
        assert "chip_path" not in body and "frame_path" not in body and "/srv/" not in msg.text
        assert body["face_url"] == "https://fw.example:8443/api/events/41/face.jpg"
        assert body["frame_url"] == "https://fw.example:8443/api/events/41/frame.jpg"
        expected = {k: v for k, v in e.public().items() if k not in ("chip_path", "frame_path")}
        assert {k: body[k] for k in expected} == expected
        assert set(body) == set(expected) | {"face_url", "frame_url"}

        p.send(event(42, camera="gate.2", snapshots=False))
        body = sub.wait_for(f"{PREFIX}/gate.2/alert").json()
        assert body["id"] == 42 and body["face_url"] is None and body["frame_url"] is None

    with Subscriber(broker) as sub, publisher(mqtt_cfg(broker, qos=2)) as p:  # no public_url: no links
        p.send(event(43))
        msg = sub.wait_for(f"{PREFIX}/cam1/alert")
        assert msg.json()["face_url"] is None and msg.json()["frame_url"] is None


def test_send_is_thread_safe(broker: Broker) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with Subscriber(broker) as sub, publisher(mqtt_cfg(broker)) as p:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(p.send, [event(i) for i in range(1, 41)]))
        sub.wait_until(lambda ms: len([m for m in ms if m.topic.endswith("/alert")]) >= 40)
        assert sorted(alert_ids(sub)) == list(range(1, 41))


# ---------------------------------------------------------------------- availability, last will, status
def test_available_retained_online_and_clean_close_publishes_offline(broker: Broker) -> None:
    topic = f"{PREFIX}/available"
    with Subscriber(broker) as live:
        with publisher(mqtt_cfg(broker)):
            live.wait_for(topic, lambda m: m.text == "online")
            assert retained(broker, topic).text == "online"
        live.wait_for(topic, lambda m: m.text == "offline")
    assert retained(broker, topic).text == "offline"


def test_last_will_marks_offline_when_the_process_is_killed(broker: Broker) -> None:
    code = (
        "import time\n"
        "from stream.config import MqttConfig\n"
        "from stream.outputs.mqtt import MqttPublisher\n"
        f"p = MqttPublisher(MqttConfig(host='127.0.0.1', port={broker.port}, prefix='{PREFIX}', client_id='fw-child',"
        " reconnect_min_s=0.1), ['cam1'])\n"
        "p.start()\n"
        "assert p.wait_connected(20)\n"
        "print('ready', flush=True)\n"
        "time.sleep(120)\n")
    topic = f"{PREFIX}/available"
    with Subscriber(broker) as sub:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready and proc.stdout is not None and proc.stdout.readline().strip() == b"ready", \
                proc.stderr.read().decode() if proc.poll() is not None and proc.stderr else "child not ready"
            sub.wait_for(topic, lambda m: m.text == "online")
            proc.send_signal(signal.SIGKILL)  # no chance to say goodbye: the broker sends the will
            proc.wait(10)
            sub.wait_for(topic, lambda m: m.text == "offline", timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    assert retained(broker, topic).text == "offline"


def test_camera_status_retained_and_republished_after_a_broker_restart(broker: Broker) -> None:
    topic = f"{PREFIX}/cam1/status"
    with publisher(mqtt_cfg(broker)) as p:
        with Subscriber(broker) as live:
            p.status("cam1", False, "connection refused", 1000.0)
            live.wait_for(topic)  # the broker has it: a subscriber from now on gets it retained
        m = retained(broker, topic)
        assert m.json() == {"camera": "cam1", "online": False, "detail": "connection refused", "ts": 1000.0}

        broker.stop()  # no persistence: the broker forgets every retained message
        wait(lambda: not p.connected, 10, "publisher noticing the outage")
        p.status("cam1", True, "streaming", 1001.0)  # while down: remembered
        broker.start()
        assert p.wait_connected(10)
        with Subscriber(broker) as live:  # republished on reconnect
            live.wait_for(topic)
            live.wait_for(f"{PREFIX}/available")
        assert retained(broker, topic).json() == {"camera": "cam1", "online": True, "detail": "streaming", "ts": 1001.0}
        assert retained(broker, f"{PREFIX}/available").text == "online"


# ---------------------------------------------------------------------- outages
def test_send_fails_while_the_broker_is_down_and_works_when_it_is_back(broker: Broker) -> None:
    with Subscriber(broker) as sub, publisher(mqtt_cfg(broker, ack_timeout_s=1.0)) as p:
        broker.stop()
        with pytest.raises(MqttError, match=f"127.0.0.1:{broker.port}"):
            p.send(event(1))
        wait(lambda: not p.connected, 10, "publisher noticing the outage")
        with pytest.raises(MqttError, match="not connected"):
            p.send(event(2))
        broker.start()  # same port
        assert p.wait_connected(10)
        sub.wait_ready()
        p.send(event(2))
        sub.wait_for(f"{PREFIX}/cam1/alert", lambda m: m.json()["id"] == 2)


def test_broker_down_at_start_does_not_block(tmp_path: Path) -> None:
    b = Broker(tmp_path / "b")  # configured, never started
    t0 = time.monotonic()
    with publisher(mqtt_cfg(b), connect=False) as p:
        assert time.monotonic() - t0 < 1.0
        with pytest.raises(MqttError, match="not connected"):
            p.send(event(1))
        b.start()
        try:
            assert p.wait_connected(10)
            p.send(event(1))
        finally:
            b.kill()


def test_unacknowledged_try_is_not_published_twice(broker: Broker) -> None:
    """A try that timed out (broker frozen) lands later; the retry waits for that message instead of a second copy."""
    with Subscriber(broker) as sub, publisher(mqtt_cfg(broker, ack_timeout_s=0.5)) as p:
        assert broker.proc is not None
        os.kill(broker.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(MqttError, match="no acknowledgement"):
                p.send(event(7))
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
        p.send(event(7))  # the retry
        p.send(event(8))
        sub.wait_for(f"{PREFIX}/cam1/alert", lambda m: m.json()["id"] == 8)
        time.sleep(0.3)
        assert alert_ids(sub) == [7, 8]


def test_outbox_delivers_every_event_after_an_outage(tmp_path: Path) -> None:
    """End to end with the real outbox: alerts stored while the broker is down are all delivered once it is back."""
    with running_broker(tmp_path / "broker", persistence=True) as b:
        sub = Subscriber(b, client_id="fw-e2e-sub", persistent=True).start()  # its session survives the restart
        try:
            b.stop()
            store_path = tmp_path / "events.sqlite"
            store = EventStore(store_path)
            ids = [store.add(event(None), sinks=["mqtt"]).id for _ in range(6)]
            with publisher(mqtt_cfg(b), connect=False) as p:
                worker = DeliveryWorker(store_path, "mqtt", p, DeliveryConfig(backoff_s=0.2, max_backoff_s=0.5),
                                        poll_s=0.2)
                worker.start()
                try:
                    wait(lambda: worker.try_failures >= len(ids), 15, "failed tries while the broker is down")
                    assert worker.delivered == 0 and store.delivery_stats()["mqtt"]["pending"] == len(ids)
                    b.start()
                    sub.wait_ready()
                    sub.wait_until(lambda ms: set(ids) <= set(alert_ids(sub)), timeout=20)
                    wait(lambda: store.delivery_stats()["mqtt"]["delivered"] == len(ids), 10, "all marked delivered")
                finally:
                    worker.stop()
                    worker.join(5)
            assert sorted(alert_ids(sub)) == sorted(ids)  # every event, and each once
            assert all(s["state"] == "delivered" for i in ids for s in store.delivery_states(i))
            store.close()
        finally:
            sub.close()


# ---------------------------------------------------------------------- security
def test_username_and_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running_broker(tmp_path / "broker", users={"facewatch": "right-pw-123"}) as b:
        monkeypatch.setenv("FW_TEST_MQTT_PW", "wrong-pw-456")
        cfg = mqtt_cfg(b, username="facewatch", password_env="FW_TEST_MQTT_PW")
        with publisher(cfg, connect=False) as p:
            assert not p.wait_connected(1.0)
            with pytest.raises(MqttError) as err:
                p.send(event(1))
            assert "refused" in str(err.value) and "wrong-pw" not in str(err.value)

        monkeypatch.setenv("FW_TEST_MQTT_PW", "right-pw-123")
        with Subscriber(b, username="facewatch", password="right-pw-123") as sub, publisher(cfg) as p:
            p.send(event(2))
            assert sub.wait_for(f"{PREFIX}/cam1/alert").json()["id"] == 2


def test_tls(tmp_path: Path) -> None:
    if not any(Path(d, "openssl").is_file() for d in os.environ.get("PATH", "").split(os.pathsep)):
        pytest.skip("openssl CLI missing (needed to make test certificates)")
    files = make_tls(tmp_path / "tls")
    with running_broker(tmp_path / "broker", tls=files) as b:
        cfg = mqtt_cfg(b, tls=MqttTlsConfig(ca_certs=files.ca))
        with Subscriber(b, ca_certs=files.ca) as sub, publisher(cfg) as p:
            p.send(event(5))
            assert sub.wait_for(f"{PREFIX}/cam1/alert").json()["id"] == 5
    with pytest.raises(MqttError, match="tls"):
        MqttPublisher(mqtt_cfg(b, tls=MqttTlsConfig(ca_certs=tmp_path / "missing.crt")), ["cam1"])


# ---------------------------------------------------------------------- Home Assistant
def test_home_assistant_discovery(broker: Broker) -> None:
    cfg = mqtt_cfg(broker, discovery=True)
    cameras = ("cam1", "gate.2")
    topics = {c: f"homeassistant/sensor/facewatch_{c.replace('.', '_')}/last_identity/config" for c in cameras}
    with Subscriber(broker) as live, publisher(cfg, cameras) as p:
        for cam, topic in topics.items():
            conf = live.wait_for(topic).json()
            assert conf["state_topic"] == f"{PREFIX}/{cam}/last_identity"
            assert conf["availability_topic"] == f"{PREFIX}/available"
            assert (conf["payload_available"], conf["payload_not_available"]) == ("online", "offline")
            assert conf["unique_id"] and conf["name"]
            assert conf["device"]["manufacturer"] == "facewatch" and conf["device"]["identifiers"]
        assert len({live.wait_for(t).json()["unique_id"] for t in topics.values()}) == 2

        now = time.time()
        p.send(event(1, identity="alice", ts=now))
        live.wait_for(f"{PREFIX}/cam1/last_identity", lambda m: m.text == "alice")
        p.send(event(2, identity=None, ts=now + 1))
        live.wait_for(f"{PREFIX}/cam1/last_identity", lambda m: m.text == "unknown")
        p.send(event(3, identity="bob", ts=now - 10))  # a late retry of an older alert does not overwrite it
        p.send(event(4, camera="gate.2", identity="carol", ts=now))
        live.wait_for(f"{PREFIX}/gate.2/last_identity", lambda m: m.text == "carol")  # after bob's, had it been sent
        assert [m.text for m in live.on(f"{PREFIX}/cam1/last_identity")] == ["alice", "unknown"]

        for topic in topics.values():
            retained(broker, topic)
        assert retained(broker, f"{PREFIX}/cam1/last_identity").text == "unknown"


# ---------------------------------------------------------------------- config
@pytest.mark.parametrize("override, field", [
    ({"prefix": "fw/#"}, "alerts.sinks.mqtt.prefix"),
    ({"prefix": "fw/+/x"}, "alerts.sinks.mqtt.prefix"),
    ({"qos": 3}, "alerts.sinks.mqtt.qos"),
    ({"port": 0}, "alerts.sinks.mqtt.port"),
    ({"ack_timeout_s": 0}, "alerts.sinks.mqtt.ack_timeout_s"),
    ({"tls": {"ca_file": "x"}}, "alerts.sinks.mqtt.tls.ca_file"),
])
def test_bad_config_is_rejected_naming_the_field(override: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(overrides={"alerts": {"sinks": {"mqtt": override}}})


def test_good_config_loads() -> None:
    m = load_config(overrides={"alerts": {"sinks": {"mqtt": {"host": "broker.lan", "discovery": True}}}}).alerts.sinks.mqtt
    assert m is not None and m.host == "broker.lan" and m.qos == 1 and m.discovery
