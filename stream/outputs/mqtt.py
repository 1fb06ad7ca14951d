"""MQTT sink (paho-mqtt 2.x): alerts, camera status, availability and Home Assistant discovery.

Why the alert publish waits for the broker: the event store's outbox is the source of truth for every delivery,
and it marks an entry delivered only when ``send`` returns. MQTT's QoS 1 is what gives an acknowledgement (the
broker's PUBACK means it now holds the message), so ``send`` publishes at ``qos`` and waits for that ack up to
``ack_timeout_s``; when the client is not connected or the ack does not come in time it raises ``MqttError`` and the
outbox retries later with backoff. Nothing is therefore lost while the broker is down, and paho's own in-memory
queue is never the only copy of an alert. (With ``qos: 0`` there is no ack: ``send`` returns once the message is
written to the socket, which is weaker.)

Delivery is at least once, as for every sink. A try that timed out may still land later (paho resends its
unacknowledged QoS 1 messages after a reconnect); the next try of that event then waits for that same message
instead of publishing a second copy, so an outage does not pile up duplicates.

Topics (``<prefix>`` = ``alerts.sinks.mqtt.prefix``):

* ``<prefix>/<camera>/alert``: one JSON per alert (``Event.public()`` without the server file paths, plus
  ``face_url``/``frame_url`` links to the API's snapshots, null when unknown), QoS ``qos``, not retained.
* ``<prefix>/<camera>/status``: retained JSON ``{"camera", "online", "detail", "ts"}``, QoS 1.
* ``<prefix>/available``: retained ``online``; the last will (retained, QoS 1) and a clean ``close`` set ``offline``.
* with ``discovery``: ``<discovery_prefix>/sensor/facewatch_<camera>/last_identity/config`` (retained Home
  Assistant sensor configs) and the sensor state ``<prefix>/<camera>/last_identity`` (retained; the name of the
  last identity alerted on, or ``unknown``).

On every (re)connect the availability, the camera statuses and discovery states this object knows are published
again, so a broker restarted without persistence holds them again.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import threading
from typing import Any

import paho.mqtt.client as mqtt

from stream.config import MqttConfig
from stream.records import Event

log = logging.getLogger(__name__)

AVAILABLE, ONLINE, OFFLINE = "available", "online", "offline"
CLOSE_ACK_S = 2.0  # on close, how long the retained "offline" may take to be acknowledged


class MqttError(RuntimeError):
    """One try failed (not connected, refused, no acknowledgement in time); the message is safe to log: it names
    the broker's host and port, never the password."""


def _node_id(camera: str) -> str:
    """Home Assistant allows only ``[a-zA-Z0-9_-]`` in a discovery node id; camera names may also hold '.'."""
    return "facewatch_" + "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "_" for c in camera)


class MqttPublisher:
    """One MQTT connection for the alert stage. ``send`` is the outbox sink call and is thread-safe (the delivery
    worker calls it from several pool threads); ``status`` and ``close`` may be called from any thread."""

    name = "mqtt"

    def __init__(self, cfg: MqttConfig, cameras: list[str], public_url: str | None = None) -> None:
        self.cfg = cfg
        self.cameras = list(dict.fromkeys(cameras))
        self.public_url = public_url.rstrip("/") if public_url else None
        self.prefix = cfg.prefix
        self.where = f"{cfg.host}:{cfg.port}"
        # per process by default: two facewatch processes on one host (run + a second run, a test) must not
        # knock each other off the broker; nothing depends on a stable id, the outbox keeps what is owed
        self.client_id = cfg.client_id or f"facewatch-{socket.gethostname()}-{os.getpid()}"
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._closed = False
        self._started = False
        self._last_error = "not connected yet"
        self._logged_error = ""
        self._statuses: dict[str, str] = {}  # camera -> retained status JSON, republished on reconnect
        self._identities: dict[str, tuple[float, str]] = {}  # camera -> (event ts, last identity state)
        self._pending: dict[int, mqtt.MQTTMessageInfo] = {}  # event id -> its unacknowledged publish

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv311)
        c.will_set(self.topic(AVAILABLE), OFFLINE, qos=1, retain=True)
        if cfg.username is not None:
            c.username_pw_set(cfg.username, self._password())
        elif cfg.password_env:
            log.warning("alerts.sinks.mqtt.password_env is set but username is not: MQTT sends no password "
                        "without a user name, so none is sent")
        if cfg.tls is not None:
            t = cfg.tls
            try:
                c.tls_set(ca_certs=str(t.ca_certs) if t.ca_certs else None,
                          certfile=str(t.certfile) if t.certfile else None,
                          keyfile=str(t.keyfile) if t.keyfile else None)
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise MqttError(f"alerts.sinks.mqtt.tls: cannot load the TLS files: {exc}") from None
            c.tls_insecure_set(t.insecure)
        c.reconnect_delay_set(min_delay=cfg.reconnect_min_s, max_delay=max(cfg.reconnect_min_s, cfg.reconnect_max_s))  # type: ignore[arg-type]
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        self._client = c

    def _password(self) -> str | None:
        if not self.cfg.password_env:
            return None
        pw = os.environ.get(self.cfg.password_env)
        if pw is None:
            log.warning("alerts.sinks.mqtt.password_env names %s, which is not set: connecting to the MQTT broker "
                        "without a password", self.cfg.password_env)
        return pw

    # ------------------------------------------------------------------ topics and payloads
    def topic(self, *parts: str) -> str:
        return "/".join((self.prefix, *parts))

    def discovery_topic(self, camera: str) -> str:
        return f"{self.cfg.discovery_prefix}/sensor/{_node_id(camera)}/last_identity/config"

    def discovery_config(self, camera: str) -> dict[str, Any]:
        """The Home Assistant MQTT discovery config of one camera's "last identity" sensor; the alert JSON is its
        attributes (score, time, snapshot links)."""
        node = _node_id(camera)
        return {
            "name": "Last identity",
            "unique_id": f"{node}_last_identity",
            "object_id": f"{node}_last_identity",
            "state_topic": self.topic(camera, "last_identity"),
            "json_attributes_topic": self.topic(camera, "alert"),
            "availability_topic": self.topic(AVAILABLE),
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "icon": "mdi:face-recognition",
            "device": {"identifiers": [node], "name": f"facewatch {camera}", "manufacturer": "facewatch",
                       "model": "camera"},
        }

    def payload(self, e: Event) -> dict[str, Any]:
        """What an alert publishes: the public JSON without server file paths, with links to the snapshots."""
        out = e.public()
        chip, frame = out.pop("chip_path", None), out.pop("frame_path", None)
        base = f"{self.public_url}/api/events/{e.id}" if self.public_url and e.id is not None else None
        out["face_url"] = f"{base}/face.jpg" if base and chip else None
        out["frame_url"] = f"{base}/frame.jpg" if base and frame else None
        return out

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Connect in the background (paho's network thread), retrying with backoff; never blocks or fails when the
        broker is down: ``send`` raises until the connection is up and the outbox retries."""
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True
        self._client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self._client.loop_start()

    @property
    def connected(self) -> bool:
        return self._connected.is_set() and self._client.is_connected()

    def wait_connected(self, timeout: float) -> bool:
        """True once connected (within ``timeout`` s); for start-up checks and tests."""
        return self._connected.wait(timeout)

    def close(self) -> None:
        """Publish ``offline`` (retained) so subscribers know this was a clean stop, then disconnect."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            started = self._started
        if not started:
            return
        if self.connected:
            info = self._client.publish(self.topic(AVAILABLE), OFFLINE, qos=1, retain=True)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                try:
                    info.wait_for_publish(timeout=min(CLOSE_ACK_S, self.cfg.ack_timeout_s))
                except (RuntimeError, ValueError):
                    pass
        self._connected.clear()
        self._client.disconnect()
        self._client.loop_stop()

    # ------------------------------------------------------------------ the outbox sink
    def send(self, e: Event) -> None:
        """Publish one alert and wait for the broker's acknowledgement; ``MqttError`` when it did not land."""
        topic = self.topic(e.camera, "alert")
        with self._lock:
            info = self._pending.pop(e.id, None) if e.id is not None else None
        if info is not None and info.rc != mqtt.MQTT_ERR_SUCCESS:
            info = None  # that earlier try never got queued: publish anew
        if info is None:  # else an earlier try's message is still queued in paho: wait for it, no second copy
            if self._closed:
                raise MqttError(f"MQTT publisher for {self.where} is closed")
            if not self.connected:
                raise MqttError(f"not connected to the MQTT broker {self.where} ({self._last_error})")
            info = self._client.publish(topic, json.dumps(self.payload(e)), qos=self.cfg.qos, retain=False)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise MqttError(f"publish to the MQTT broker {self.where} failed: {mqtt.error_string(info.rc)}")
        try:
            info.wait_for_publish(timeout=self.cfg.ack_timeout_s)
            published = info.is_published()
        except (RuntimeError, ValueError) as exc:
            raise MqttError(f"publish to the MQTT broker {self.where} failed: {exc}") from None
        if not published:
            if e.id is not None:
                with self._lock:
                    self._pending[e.id] = info
            raise MqttError(f"no acknowledgement from the MQTT broker {self.where} within {self.cfg.ack_timeout_s:g} s")
        if self.cfg.discovery:
            self._identity(e)

    def _identity(self, e: Event) -> None:
        """The Home Assistant sensor state: the newest alert's identity per camera (a late retry of an older event
        does not overwrite it)."""
        state = e.identity or "unknown"
        with self._lock:
            if e.camera in self._identities and self._identities[e.camera][0] > e.ts:
                return
            self._identities[e.camera] = (e.ts, state)
        self._client.publish(self.topic(e.camera, "last_identity"), state, qos=1, retain=True)

    # ------------------------------------------------------------------ camera status
    def status(self, camera: str, online: bool, detail: str, ts: float) -> None:
        """Retained camera status (QoS 1, fire and forget); remembered and published again after a reconnect."""
        body = json.dumps({"camera": camera, "online": bool(online), "detail": detail, "ts": ts})
        with self._lock:
            self._statuses[camera] = body
        if self.connected and not self._closed:
            self._client.publish(self.topic(camera, "status"), body, qos=1, retain=True)

    # ------------------------------------------------------------------ paho callbacks (its network thread)
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason_code: mqtt.ReasonCode, properties: mqtt.Properties | None) -> None:
        try:  # an exception escaping a paho callback would stop its network thread
            if reason_code.is_failure:
                self._connected.clear()
                self._failed(f"refused: {reason_code}")
                return
            log.info("connected to the MQTT broker %s as %s", self.where, self.client_id)
            self._logged_error = ""
            self._announce(client)
            self._connected.set()
        except Exception:
            log.exception("MQTT on_connect failed")

    def _announce(self, client: mqtt.Client) -> None:
        """Availability, the known camera statuses and the Home Assistant discovery, all retained."""
        client.publish(self.topic(AVAILABLE), ONLINE, qos=1, retain=True)
        with self._lock:
            statuses = dict(self._statuses)
            identities = dict(self._identities)
        for camera, body in statuses.items():
            client.publish(self.topic(camera, "status"), body, qos=1, retain=True)
        if self.cfg.discovery:
            for camera in self.cameras:
                client.publish(self.discovery_topic(camera), json.dumps(self.discovery_config(camera)), qos=1,
                               retain=True)
            for camera, (_, state) in identities.items():
                client.publish(self.topic(camera, "last_identity"), state, qos=1, retain=True)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        try:
            self._connected.clear()
            self._failed("cannot connect: broker down or unreachable")
        except Exception:
            log.exception("MQTT on_connect_fail failed")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason_code: mqtt.ReasonCode, properties: mqtt.Properties | None) -> None:
        try:
            was_connected = self._connected.is_set()
            self._connected.clear()
            if self._closed:
                return
            if was_connected:
                self._logged_error = ""
                self._failed(f"connection lost: {reason_code}")
        except Exception:
            log.exception("MQTT on_disconnect failed")

    def _failed(self, reason: str) -> None:
        """Remember why we are not connected (for ``MqttError``); log each new reason once, not every retry."""
        self._last_error = reason
        if reason != self._logged_error:
            self._logged_error = reason
            log.warning("MQTT broker %s: %s; reconnecting in the background (backoff up to %g s)",
                        self.where, reason, self.cfg.reconnect_max_s)
