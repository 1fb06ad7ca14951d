"""The event store: every alert is written here (SQLite) before any delivery is attempted.

Why first: a webhook that is down, a crash of the alert stage, or a restart must never lose an alert;
deliveries are retried from what is stored. Camera status changes are stored too. The file is 0600.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

from stream.records import Event

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,              -- wall-clock time the alert was raised
    ts_capture REAL NOT NULL,      -- capture time of the frame that decided it
    camera TEXT NOT NULL,
    kind TEXT NOT NULL,            -- watchlist | unknown
    identity TEXT,
    score REAL NOT NULL,
    threshold REAL NOT NULL,
    track_id INTEGER NOT NULL,
    latency_ms REAL NOT NULL,      -- capture -> alert
    box TEXT,
    chip_path TEXT,
    frame_path TEXT,
    webhook_state TEXT NOT NULL DEFAULT 'none',  -- none | pending | delivered | failed
    webhook_attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
CREATE TABLE IF NOT EXISTS camera_status (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, camera TEXT NOT NULL, online INTEGER NOT NULL, detail TEXT
);
"""

COLUMNS = tuple(Event.model_fields)  # the table's columns are the record's fields, in order


class EventStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        os.close(fd)
        self.db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)
        self.db.commit()

    def add(self, event: Event) -> Event:
        """Store ``event``; returns it with its row id."""
        row = event.model_dump(exclude={"id"})
        row["box"] = json.dumps(row["box"]) if row["box"] is not None else None
        with self.db:
            cur = self.db.execute(
                f"INSERT INTO events ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})", list(row.values()))
        return event.model_copy(update={"id": int(cur.lastrowid)})

    def set_webhook(self, event_id: int, state: str, attempts: int) -> None:
        with self.db:
            self.db.execute("UPDATE events SET webhook_state = ?, webhook_attempts = ? WHERE id = ?", (state, attempts, event_id))

    def add_status(self, camera: str, online: bool, detail: str, ts: float | None = None) -> None:
        with self.db:
            self.db.execute("INSERT INTO camera_status (ts, camera, online, detail) VALUES (?, ?, ?, ?)",
                            (ts or time.time(), camera, int(online), detail))

    def events(self, since: float = 0.0, limit: int = 10_000) -> list[Event]:
        rows = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM events WHERE ts >= ? ORDER BY ts LIMIT ?", (since, limit))
        out = []
        for r in rows:
            d = dict(zip(COLUMNS, r))
            d["box"] = json.loads(d["box"]) if d["box"] else None
            out.append(Event.model_validate(d))
        return out

    def pending_webhooks(self) -> list[Event]:
        return [e for e in self.events() if e.webhook_state == "pending"]

    def statuses(self) -> list[dict]:
        return [dict(zip(("ts", "camera", "online", "detail"), r))
                for r in self.db.execute("SELECT ts, camera, online, detail FROM camera_status ORDER BY id")]

    def close(self) -> None:
        self.db.close()
