"""Test helper: a real Mosquitto broker on 127.0.0.1 and a subscriber that records what it sees.

Not a conftest on purpose: only the MQTT tests use it (``from tests.mosquitto import Broker, Subscriber`` or
``from mosquitto import ...`` with ``tests/`` on the path). A ``Broker`` can be stopped and started again on the
same port, which is how the outage tests take the broker away under a live client. Tests skip (``requires_mosquitto``
or ``broker_or_skip``) only when ``/usr/sbin/mosquitto`` is missing; every broker started here is killed at exit,
and also when the test process dies (Linux parent-death signal).
"""
from __future__ import annotations

import atexit
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

MOSQUITTO = Path(os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto"))
MOSQUITTO_PASSWD = Path(shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd")
HOST = "127.0.0.1"
MISSING_REASON = f"{MOSQUITTO} is missing (apt-get install mosquitto)"

requires_mosquitto = pytest.mark.skipif(not MOSQUITTO.is_file(), reason=MISSING_REASON)

_live: set[subprocess.Popen[bytes]] = set()


def _kill_all() -> None:
    for p in list(_live):
        if p.poll() is None:
            p.kill()
            p.wait(5)


atexit.register(_kill_all)


def _die_with_parent() -> None:
    """In the child: SIGKILL when the test process dies, even by SIGKILL (prctl PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def accepts(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class TlsFiles:
    """A broker's TLS files: the CA that signed it (clients' ``ca_certs``), its certificate and key."""

    ca: Path
    cert: Path
    key: Path


def make_tls(folder: Path, host: str = HOST) -> TlsFiles:
    """A throwaway CA and a server certificate for ``host`` (IP SAN), made with the openssl CLI."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.crt", folder / "ca.key"
    cert, key, csr, ext = folder / "server.crt", folder / "server.key", folder / "server.csr", folder / "san.ext"

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=facewatch test CA",
        "-keyout", str(ca_key), "-out", str(ca))
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={host}", "-keyout", str(key), "-out", str(csr))
    ext.write_text(f"subjectAltName=IP:{host}\n" if host.replace(".", "").isdigit() else f"subjectAltName=DNS:{host}\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2",
        "-extfile", str(ext), "-out", str(cert))
    return TlsFiles(ca, cert, key)


class Broker:
    """``/usr/sbin/mosquitto -c <conf>`` listening on ``HOST:port`` (a free port unless given).

    ``users``: name -> password; then a password file (``mosquitto_passwd -b -c``) and no anonymous access.
    ``persistence``: keep sessions and queued QoS 1 messages across ``stop``/``start`` (saved on a clean stop).
    ``tls``: serve TLS with these files instead of plain TCP.
    """

    def __init__(self, workdir: Path, users: dict[str, str] | None = None, persistence: bool = False,
                 tls: TlsFiles | None = None, port: int | None = None) -> None:
        if not MOSQUITTO.is_file():
            raise FileNotFoundError(MISSING_REASON)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host, self.port = HOST, port or free_port()
        self.log_path = self.workdir / "mosquitto.log"
        self.conf = self.workdir / "mosquitto.conf"
        lines = [f"listener {self.port} {HOST}", f"allow_anonymous {'false' if users else 'true'}",
                 f"persistence {'true' if persistence else 'false'}"]
        if persistence:
            lines += [f"persistence_location {self.workdir}/", "autosave_interval 0"]
        if users:
            pw = self.workdir / "passwd"
            for i, (name, password) in enumerate(users.items()):
                subprocess.run([str(MOSQUITTO_PASSWD), "-b", *(["-c"] if i == 0 else []), str(pw), name, password],
                               check=True, capture_output=True, timeout=30)
            lines.append(f"password_file {pw}")
        if tls:
            lines += [f"cafile {tls.ca}", f"certfile {tls.cert}", f"keyfile {tls.key}"]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to the mosquitto user, who cannot read the files made here
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = 10.0) -> Broker:
        """Start (again, on the same port) and return once it accepts TCP connections."""
        if self.running:
            return self
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen([str(MOSQUITTO), "-c", str(self.conf)], stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        _live.add(self.proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}:\n{self.log()[-2000:]}")
            if accepts(self.port):
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {HOST}:{self.port} within {timeout} s:\n{self.log()[-2000:]}")

    def stop(self, timeout: float = 5.0) -> None:
        """A clean stop (SIGTERM: clients see the connection close; persistence is saved); SIGKILL if it hangs."""
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        _live.discard(p)
        self.proc = None

    def kill(self) -> None:
        p = self.proc
        if p is not None:
            if p.poll() is None:
                p.kill()
                p.wait(5)
            _live.discard(p)
        self.proc = None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


def broker_or_skip(workdir: Path, **kw: Any) -> Broker:
    """A started broker, or ``pytest.skip`` naming the missing binary."""
    if not MOSQUITTO.is_file():
        pytest.skip(MISSING_REASON)
    return Broker(workdir, **kw).start()


@contextmanager
def running_broker(workdir: Path, **kw: Any) -> Iterator[Broker]:
    """For fixtures: ``with running_broker(tmp_path) as b: yield b``; killed afterwards."""
    b = broker_or_skip(workdir, **kw)
    try:
        yield b
    finally:
        b.kill()


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    qos: int

    @property
    def text(self) -> str:
        return self.payload.decode()

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """A paho client subscribed to ``topic`` (``#`` = everything) that records every message.

    It reconnects by itself (and subscribes again) after the broker comes back; ``persistent`` keeps its session
    (clean_session false, QoS 1) so a broker with ``persistence`` queues what is published while it reconnects.
    """

    def __init__(self, broker: Broker, topic: str = "#", username: str | None = None, password: str | None = None,
                 client_id: str | None = None, persistent: bool = False, ca_certs: Path | None = None) -> None:
        self.broker, self.topic = broker, topic
        self.messages: list[Message] = []
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"sub-{os.getpid()}-{id(self)}",
                                  clean_session=not persistent, protocol=mqtt.MQTTv311)
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca_certs is not None:
            self.client.tls_set(ca_certs=str(ca_certs))
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def start(self, timeout: float = 10.0) -> Subscriber:
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=10)
        self.client.loop_start()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Until connected and subscribed (again, after a broker restart)."""
        if not self._ready.wait(timeout):
            raise TimeoutError(f"subscriber not subscribed within {timeout} s")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Subscriber:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: mqtt.ReasonCode, props: Any) -> None:
        if not rc.is_failure:
            client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, rcs: Any, props: Any) -> None:
        self._ready.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self._ready.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain), int(msg.qos)))
            self._cond.notify_all()

    def on(self, topic: str) -> list[Message]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, topic: str, pred: Callable[[Message], bool] = lambda m: True, timeout: float = 10.0) -> Message:
        """The first message on ``topic`` (received so far or within ``timeout``) that ``pred`` accepts."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages:
                    if m.topic == topic and pred(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = sorted({m.topic for m in self.messages})
                    raise TimeoutError(f"no matching message on {topic} within {timeout} s (topics seen: {seen})")
                self._cond.wait(left)

    def wait_until(self, cond: Callable[[list[Message]], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not cond(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"condition not met within {timeout} s ({len(self.messages)} messages)")
                self._cond.wait(left)
