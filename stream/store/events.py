"""The event store: every alert is written here (SQLite) with one outbox entry per sink, before any delivery.

Why an outbox: a webhook that is down, a crash of the alert stage, or a restart must never lose an alert. The
event and its deliveries (``deliveries`` table: one row per event and sink) are written in ONE transaction, so
an alert is never stored without them; the delivery workers (``stream.outputs.delivery``) send what is due,
reschedule what failed and mark ``failed`` only after ``alerts.delivery.give_up_after_s``; ``facewatch events
redeliver`` puts entries back to pending. Camera status changes are stored too. The file is 0600, in WAL mode
(the alert stage, its workers and the CLI each hold their own connection).

Files written by older versions are migrated on open, in one transaction: their ``webhook_state`` entries are
copied into the outbox first (so an old pending delivery is still sent), then the ``events`` table is rebuilt
with today's columns, keeping every row and id.

Each event also keeps its face embedding (a BLOB, never sent to sinks): ``stream.store.event_index`` builds the
HNSW index over them that search by face and the grouping of unknown visitors use.

An unknown face found later to be someone enrolled since (``stream.store.relabel``) gets ``relabel_*`` columns beside
its original decision, which is never overwritten: ``kind``, ``identity`` and ``score`` still say what was decided then.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stream.records import DeliveryState, Event, Feedback

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
    latency_ms REAL,               -- capture -> alert (NULL for recorded video)
    box TEXT,
    chip_path TEXT,
    frame_path TEXT,
    source TEXT NOT NULL DEFAULT 'live',  -- live | scan
    video_file TEXT,
    video_time REAL,
    unknown_id INTEGER,            -- visitor group of an unknown face
    feedback TEXT,                 -- confirmed | rejected (operator feedback)
    feedback_identity TEXT,
    rule TEXT,                     -- how it was decided: the track rule or votes
    chips_used INTEGER,            -- embeddings of the track the decision rests on
    embedder TEXT,                 -- profile id of the embedding below (engines/profiles.py)
    relabel_name TEXT,             -- an unknown face found to be this person after they were enrolled
    relabel_score REAL,            --   its score against them then (kind, identity, score: the original decision)
    relabel_at REAL,
    relabel_by TEXT,               --   cli | api
    embedding BLOB                 -- the track's face embedding (float32), for search by face and visitor groups
);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
CREATE INDEX IF NOT EXISTS events_unknown ON events(unknown_id);
CREATE INDEX IF NOT EXISTS events_capture ON events(ts_capture, id);
CREATE TABLE IF NOT EXISTS deliveries (
    event_id INTEGER NOT NULL REFERENCES events(id),
    sink TEXT NOT NULL,                     -- webhook | jsonl | zmq_pub
    state TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | failed
    attempts INTEGER NOT NULL DEFAULT 0,    -- tries since it last became pending
    next_attempt_at REAL NOT NULL,          -- wall-clock time the next try is due
    pending_since REAL NOT NULL,            -- when it became pending (stored or redelivered): the give-up clock
    last_error TEXT,
    updated REAL NOT NULL,
    PRIMARY KEY (event_id, sink)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(sink, state, next_attempt_at);
CREATE TABLE IF NOT EXISTS camera_status (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, camera TEXT NOT NULL, online INTEGER NOT NULL, detail TEXT
);
"""

#: The stored columns of ``events``: the record's public fields (``deliveries`` lives in its own table).
COLUMNS: tuple[str, ...] = Event.PUBLIC_FIELDS
STATES: tuple[DeliveryState, ...] = ("pending", "delivered", "failed")
EMBEDDING_DTYPE = np.float32


@dataclass(frozen=True)
class EventFilter:
    """Which events a query returns; every field None = no condition."""

    camera: str | None = None
    identity: str | None = None
    kind: str | None = None
    source: str | None = None
    unknown_id: int | None = None
    since: float | None = None
    until: float | None = None
    min_score: float | None = None

    def where(self) -> tuple[str, list]:
        conds, args = [], []
        for col in ("camera", "identity", "kind", "source", "unknown_id"):
            v = getattr(self, col)
            if v is not None:
                if col == "identity":  # the person's events include unknown faces relabelled as them
                    conds.append("(identity = ? OR relabel_name = ?)")
                    args.append(v)
                else:
                    conds.append(f"{col} = ?")
                args.append(v)
        for col, op, v in (("ts_capture", ">=", self.since), ("ts_capture", "<=", self.until), ("score", ">=", self.min_score)):
            if v is not None:
                conds.append(f"{col} {op} ?")
                args.append(v)
        return (" WHERE " + " AND ".join(conds)) if conds else "", args


@dataclass
class Visitor:
    """One unknown visitor: every unknown event with the same ``unknown_id``."""

    unknown_id: int
    count: int
    first_ts: float
    last_ts: float
    cameras: list[str] = field(default_factory=list)
    latest_event_id: int = 0


class EventStoreError(ValueError):
    """The event store file cannot be used (not SQLite, damaged, unreadable); the message names the file."""


class UnknownEventError(EventStoreError):
    """An event id that the store does not hold."""


class RelabelError(ValueError):
    """An event that cannot be relabelled (not an unknown face, no stored face, already someone else's)."""


@dataclass(frozen=True)
class Delivery:
    """One outbox entry that is due: the event to send to ``sink`` and how often it was tried."""

    event: Event
    sink: str
    attempts: int
    pending_since: float
    last_error: str | None


class EventStore:
    """One connection to the event store file; each thread or process that writes opens its own."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                # Created empty and owner-only before SQLite writes to it. Only when it is new: opening and closing
                # another descriptor of a database file drops every POSIX lock this process holds on it (close()
                # semantics), so another connection of this process (the alert stage's, beside its delivery
                # workers') would lose its lock; a reader elsewhere then believes it is the last connection and
                # deletes the WAL file under the writer, whose later events become invisible, and lost on a crash.
                os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
        except FileExistsError:
            pass
        except OSError as exc:
            raise EventStoreError(f"{self.path}: cannot open the event store ({exc.strerror or exc})") from None
        self.db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        try:
            with self._guard():
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait and see the result
                self._migrate()
                for statement in SCHEMA.split(";\n"):  # not executescript: that would commit the transaction
                    if statement.strip():
                        self.db.execute(statement)
                self.db.commit()
        except EventStoreError:
            self.db.close()
            raise

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """SQLite errors (a damaged or foreign file, a locked disk) become one line naming the file."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise EventStoreError(f"{self.path}: not a usable event store ({exc})") from None

    def _migrate(self) -> None:
        """Bring a file of an older version to today's schema inside the open transaction, losing nothing.

        Older files tracked the webhook in ``events``: those states are copied into the outbox first (an entry
        that exists is left alone). Then, when ``events`` lacks a column or still has ``latency_ms NOT NULL``
        (recorded-video events have none), the table is rebuilt with today's definition, keeping rows and ids."""
        info = {r[1]: r for r in self.db.execute("PRAGMA table_info(events)")}
        if not info:
            return  # a new file: SCHEMA creates everything
        if "webhook_state" in info:
            self.db.execute(SCHEMA[SCHEMA.index("CREATE TABLE IF NOT EXISTS deliveries"):SCHEMA.index("CREATE INDEX IF NOT EXISTS deliveries_due")])
            self.db.execute(
                "INSERT OR IGNORE INTO deliveries (event_id, sink, state, attempts, next_attempt_at, pending_since, updated) "
                "SELECT id, 'webhook', webhook_state, webhook_attempts, ts, ts, ts FROM events "
                "WHERE webhook_state IN ('pending', 'delivered', 'failed')")
        wanted = COLUMNS + ("embedding",)
        if all(c in info for c in wanted) and not info["latency_ms"][3] and "webhook_state" not in info:
            return
        keep = [c for c in wanted if c in info]
        create = SCHEMA[SCHEMA.index("CREATE TABLE IF NOT EXISTS events"):SCHEMA.index("CREATE INDEX IF NOT EXISTS events_ts")]
        self.db.execute("DROP INDEX IF EXISTS events_ts")
        self.db.execute("ALTER TABLE events RENAME TO _events_old")
        self.db.execute(create)
        self.db.execute(f"INSERT INTO events ({', '.join(keep)}) SELECT {', '.join(keep)} FROM _events_old")
        self.db.execute("DROP TABLE _events_old")

    # ------------------------------------------------------------------ events
    def add(self, event: Event, sinks: Iterable[str] = (), embedding: np.ndarray | None = None) -> Event:
        """Store ``event`` (with its face ``embedding``, when known) and one pending delivery per sink in one
        transaction; returns it with its row id."""
        row = event.model_dump(include=set(COLUMNS) - {"id"})
        row["box"] = json.dumps(row["box"]) if row["box"] is not None else None
        if embedding is not None:
            row["embedding"] = np.ascontiguousarray(embedding, dtype=EMBEDDING_DTYPE).ravel().tobytes()
        sinks = list(dict.fromkeys(sinks))
        now = time.time()
        with self._guard(), self.db:
            cur = self.db.execute(
                f"INSERT INTO events ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})", list(row.values()))
            event_id = int(cur.lastrowid)
            self.db.executemany(
                "INSERT INTO deliveries (event_id, sink, state, attempts, next_attempt_at, pending_since, updated) "
                "VALUES (?, ?, 'pending', 0, ?, ?, ?)", [(event_id, s, now, now, now) for s in sinks])
        return event.model_copy(update={"id": event_id, "deliveries": {s: "pending" for s in sinks}})

    def add_status(self, camera: str, online: bool, detail: str, ts: float | None = None) -> None:
        with self._guard(), self.db:
            self.db.execute("INSERT INTO camera_status (ts, camera, online, detail) VALUES (?, ?, ?, ?)",
                            (ts or time.time(), camera, int(online), detail))

    def _event(self, values: Iterable) -> Event:
        d = dict(zip(COLUMNS, values))
        d["box"] = json.loads(d["box"]) if d["box"] else None
        return Event.model_validate(d)

    def events(self, since: float = 0.0, limit: int = 10_000) -> list[Event]:
        """Stored events from ``since`` on, oldest first, each with its delivery state per sink."""
        with self._guard():
            rows = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM events WHERE ts >= ? ORDER BY ts LIMIT ?",
                                   (since, limit)).fetchall()
            states: dict[int, dict[str, str]] = {}
            for event_id, sink, state in self.db.execute(
                    "SELECT d.event_id, d.sink, d.state FROM deliveries d JOIN events e ON e.id = d.event_id "
                    "WHERE e.ts >= ? ORDER BY d.event_id, d.sink", (since,)):
                states.setdefault(event_id, {})[sink] = state
        out = []
        for r in rows:
            e = self._event(r)
            out.append(e.model_copy(update={"deliveries": states.get(e.id, {})}))
        return out

    def query(self, flt: EventFilter = EventFilter(), limit: int = 50, offset: int = 0) -> tuple[list[Event], int]:
        """Events matching ``flt``, newest first, one page; and how many match in all."""
        where, args = flt.where()
        with self._guard():
            (total,) = self.db.execute(f"SELECT COUNT(*) FROM events{where}", args).fetchone()
            rows = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM events{where} ORDER BY ts_capture DESC, id DESC "
                                   f"LIMIT ? OFFSET ?", [*args, limit, offset]).fetchall()
        return [self._event(r) for r in rows], int(total)

    def get(self, event_id: int) -> Event:
        """One event by id, with its delivery states; ``UnknownEventError`` when there is none."""
        with self._guard():
            row = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM events WHERE id = ?", (event_id,)).fetchone()
            states = {sink: state for sink, state in self.db.execute(
                "SELECT sink, state FROM deliveries WHERE event_id = ? ORDER BY sink", (event_id,))}
        if row is None:
            raise UnknownEventError(f"{self.path}: no event with id {event_id}")
        return self._event(row).model_copy(update={"deliveries": states})

    def by_ids(self, ids: Iterable[int]) -> dict[int, Event]:
        """The events with these ids (those that exist), by id: search results and visitors name events by id."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        with self._guard():
            rows = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM events WHERE id IN ({', '.join('?' for _ in ids)})",
                                   ids).fetchall()
        return {e.id: e for e in map(self._event, rows)}

    def after(self, event_id: int, limit: int = 1000) -> list[Event]:
        """Events stored after ``event_id``, oldest first: what a live view has not shown yet."""
        with self._guard():
            rows = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM events WHERE id > ? ORDER BY id LIMIT ?",
                                   (event_id, limit)).fetchall()
        return [self._event(r) for r in rows]

    def last_id(self) -> int:
        with self._guard():
            (n,) = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()
        return int(n)

    def embedding(self, event_id: int) -> np.ndarray | None:
        """The face embedding stored with one event (None when it has none); ``UnknownEventError`` if no event."""
        with self._guard():
            row = self.db.execute("SELECT embedding FROM events WHERE id = ?", (event_id,)).fetchone()
        if row is None:
            raise UnknownEventError(f"{self.path}: no event with id {event_id}")
        return None if row[0] is None else np.frombuffer(row[0], dtype=EMBEDDING_DTYPE).copy()

    def embeddings(self, after_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(ids, embeddings [n, d]) of the events after ``after_id`` that carry an embedding, by id."""
        with self._guard():
            rows = self.db.execute("SELECT id, embedding FROM events WHERE id > ? AND embedding IS NOT NULL ORDER BY id",
                                   (after_id,)).fetchall()
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 0), EMBEDDING_DTYPE)
        ids = np.array([r[0] for r in rows], np.int64)
        return ids, np.stack([np.frombuffer(r[1], dtype=EMBEDDING_DTYPE) for r in rows])

    def unknown_ids(self, ids: Iterable[int]) -> dict[int, int]:
        """event id -> unknown_id for those of ``ids`` that are grouped unknown faces."""
        ids = list(ids)
        if not ids:
            return {}
        with self._guard():
            return {int(a): int(b) for a, b in self.db.execute(
                f"SELECT id, unknown_id FROM events WHERE unknown_id IS NOT NULL AND id IN ({', '.join('?' for _ in ids)})",
                ids)}

    def next_unknown_id(self) -> int:
        with self._guard():
            (n,) = self.db.execute("SELECT COALESCE(MAX(unknown_id), 0) + 1 FROM events").fetchone()
        return int(n)

    def set_feedback(self, event_id: int, verdict: Feedback, identity: str) -> Event:
        """Record the operator's verdict on an event (the gallery change is the caller's); returns the event."""
        with self._guard(), self.db:
            cur = self.db.execute("UPDATE events SET feedback = ?, feedback_identity = ? WHERE id = ?",
                                  (verdict, identity, event_id))
        if cur.rowcount == 0:
            raise UnknownEventError(f"{self.path}: no event with id {event_id}")
        return self.get(event_id)

    def unknown_faces(self, after_id: int = 0, limit: int = 10_000) -> list[tuple[int, str | None, np.ndarray]]:
        """(id, embedder, embedding) of the unknown-face events after ``after_id`` (by id, at most ``limit``) that
        could still be relabelled: a stored face, no relabel yet and no operator feedback."""
        with self._guard():
            rows = self.db.execute(
                "SELECT id, embedder, embedding FROM events WHERE id > ? AND kind = 'unknown' AND embedding IS NOT NULL "
                "AND relabel_name IS NULL AND feedback IS NULL ORDER BY id LIMIT ?", (after_id, limit)).fetchall()
        return [(int(i), e, np.frombuffer(b, dtype=EMBEDDING_DTYPE)) for i, e, b in rows]

    def relabel_problem(self, event_id: int, name: str) -> str | None:
        """Why the event cannot be relabelled as ``name`` (None: it can, or already is); ``UnknownEventError``."""
        with self._guard():
            row = self.db.execute("SELECT kind, identity, embedding IS NOT NULL, relabel_name, feedback, "
                                  "feedback_identity FROM events WHERE id = ?", (event_id,)).fetchone()
        if row is None:
            raise UnknownEventError(f"{self.path}: no event with id {event_id}")
        kind, identity, has_face, done, feedback, fb_who = row
        if kind != "unknown":
            return f"event {event_id} is not an unknown face (it was decided as {kind} {identity!r})"
        if done is not None and done != name:
            return f"event {event_id} was already relabelled as {done!r}"
        if done is None and not has_face:
            return f"event {event_id} has no stored face embedding"
        if done is None and feedback is not None:
            return f"event {event_id} already has operator feedback ({feedback} {fb_who!r})"
        return None

    def relabel(self, scores: dict[int, float], name: str, by: str, at: float | None = None) -> list[Event]:
        """Relabel the unknown-face events ``scores`` ({event id: score against ``name``}) as ``name``, all in one
        transaction, keeping their original decision; returns the events. Idempotent: an event already relabelled
        as ``name`` is left as it is. Any event that cannot be relabelled (``relabel_problem``) changes nothing
        (``RelabelError``; ``UnknownEventError`` for an id the store does not hold)."""
        now = time.time() if at is None else at
        with self._guard():
            self.db.execute("BEGIN IMMEDIATE")  # the checks and the updates see the same rows
            try:
                for event_id, score in scores.items():
                    why = self.relabel_problem(event_id, name)
                    if why is not None:
                        raise RelabelError(why)
                    self.db.execute("UPDATE events SET relabel_name = ?, relabel_score = ?, relabel_at = ?, relabel_by = ? "
                                    "WHERE id = ? AND relabel_name IS NULL", (name, float(score), now, by, event_id))
                self.db.commit()
            except BaseException:
                self.db.rollback()
                raise
        found = self.by_ids(scores)
        return [found[i] for i in scores if i in found]

    def visitors(self, limit: int = 50) -> list[Visitor]:
        """Unknown visitors (events grouped by ``unknown_id``), most recently seen first."""
        with self._guard():
            rows = self.db.execute(
                "SELECT unknown_id, COUNT(*), MIN(ts_capture), MAX(ts_capture), GROUP_CONCAT(DISTINCT camera), MAX(id) "
                "FROM events WHERE unknown_id IS NOT NULL GROUP BY unknown_id ORDER BY MAX(ts_capture) DESC LIMIT ?",
                (limit,)).fetchall()
        return [Visitor(int(u), int(n), float(a), float(b), sorted((cams or "").split(",")), int(last))
                for u, n, a, b, cams, last in rows]

    def latest_statuses(self) -> dict[str, dict]:
        """Each camera's last stored status change: {camera: {ts, online, detail}}."""
        with self._guard():
            rows = self.db.execute(
                "SELECT camera, ts, online, detail FROM camera_status WHERE id IN "
                "(SELECT MAX(id) FROM camera_status GROUP BY camera)").fetchall()
        return {c: {"ts": ts, "online": bool(on), "detail": d or ""} for c, ts, on, d in rows}

    def statuses(self) -> list[dict]:
        with self._guard():
            return [dict(zip(("ts", "camera", "online", "detail"), r))
                    for r in self.db.execute("SELECT ts, camera, online, detail FROM camera_status ORDER BY id")]

    # ------------------------------------------------------------------ the outbox
    def due(self, sink: str, now: float | None = None, limit: int = 100, exclude: Iterable[int] = ()) -> list[Delivery]:
        """Pending deliveries to ``sink`` whose next try is due, oldest due first (``exclude``: in flight)."""
        skip = list(exclude)
        cols = ", ".join(f"e.{c}" for c in COLUMNS)
        with self._guard():
            rows = self.db.execute(
                f"SELECT {cols}, d.attempts, d.pending_since, d.last_error FROM deliveries d "
                f"JOIN events e ON e.id = d.event_id WHERE d.sink = ? AND d.state = 'pending' AND d.next_attempt_at <= ? "
                f"AND d.event_id NOT IN ({', '.join('?' for _ in skip)}) ORDER BY d.next_attempt_at, d.event_id LIMIT ?",
                [sink, time.time() if now is None else now, *skip, limit]).fetchall()
        n = len(COLUMNS)
        return [Delivery(self._event(r[:n]), sink, int(r[n]), float(r[n + 1]), r[n + 2]) for r in rows]

    def next_due(self, sink: str, exclude: Iterable[int] = ()) -> float | None:
        """When the next pending delivery to ``sink`` (not in ``exclude``) is due; None when none is pending."""
        skip = list(exclude)
        with self._guard():
            (t,) = self.db.execute(
                f"SELECT MIN(next_attempt_at) FROM deliveries WHERE sink = ? AND state = 'pending' "
                f"AND event_id NOT IN ({', '.join('?' for _ in skip)})", [sink, *skip]).fetchone()
        return t

    def _set(self, event_id: int, sink: str, sql: str, args: tuple) -> None:
        with self._guard(), self.db:
            self.db.execute(f"UPDATE deliveries SET {sql}, updated = ? WHERE event_id = ? AND sink = ?",
                            (*args, time.time(), event_id, sink))

    def mark_delivered(self, event_id: int, sink: str) -> None:
        self._set(event_id, sink, "state = 'delivered', attempts = attempts + 1, last_error = NULL", ())

    def reschedule(self, event_id: int, sink: str, next_attempt_at: float, error: str) -> None:
        """A failed try: counted, the error kept, the next try at ``next_attempt_at``."""
        self._set(event_id, sink, "state = 'pending', attempts = attempts + 1, next_attempt_at = ?, last_error = ?",
                  (next_attempt_at, error))

    def mark_failed(self, event_id: int, sink: str, error: str) -> None:
        """The last failed try: given up on (``redeliver`` puts it back)."""
        self._set(event_id, sink, "state = 'failed', attempts = attempts + 1, last_error = ?", (error,))

    def delivery_states(self, event_id: int) -> list[dict]:
        """Every delivery of one event: sink, state, attempts, next try, last error, last change."""
        keys = ("sink", "state", "attempts", "next_attempt_at", "pending_since", "last_error", "updated")
        with self._guard():
            return [dict(zip(keys, r)) for r in self.db.execute(
                f"SELECT {', '.join(keys)} FROM deliveries WHERE event_id = ? ORDER BY sink", (event_id,))]

    def redeliver(self, ids: Iterable[int] = (), failed_only: bool = False) -> int:
        """Put deliveries back to pending, due now, with a fresh give-up clock; returns how many.

        ``ids`` limits it to those events (all of them must exist, else nothing changes); ``failed_only`` to the
        failed entries, otherwise every undelivered one (pending ones become due at once)."""
        ids = sorted(set(ids))
        now = time.time()
        where = ["state = 'failed'" if failed_only else "state != 'delivered'"]
        if ids:
            where.append(f"event_id IN ({', '.join('?' for _ in ids)})")
        with self._guard(), self.db:
            if ids:
                known = {r[0] for r in self.db.execute(
                    f"SELECT id FROM events WHERE id IN ({', '.join('?' for _ in ids)})", ids)}
                missing = [i for i in ids if i not in known]
                if missing:
                    raise UnknownEventError(f"{self.path}: no event with id {', '.join(map(str, missing))}")
            cur = self.db.execute(
                f"UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?, pending_since = ?, "
                f"updated = ? WHERE {' AND '.join(where)}", (now, now, now, *ids))
        return cur.rowcount

    def delivery_stats(self, now: float | None = None) -> dict[str, dict[str, float]]:
        """Per sink: how many deliveries are pending, delivered, failed, and the age (s) of the oldest pending one
        (0 when none is pending)."""
        now = time.time() if now is None else now
        out: dict[str, dict[str, float]] = {}
        with self._guard():
            for sink, state, n in self.db.execute("SELECT sink, state, COUNT(*) FROM deliveries GROUP BY sink, state"):
                out.setdefault(sink, {**{s: 0 for s in STATES}, "oldest_pending_s": 0.0})[state] = n
            for sink, oldest in self.db.execute(
                    "SELECT sink, MIN(pending_since) FROM deliveries WHERE state = 'pending' GROUP BY sink"):
                out[sink]["oldest_pending_s"] = max(0.0, now - oldest)
        return out

    def close(self) -> None:
        self.db.close()
