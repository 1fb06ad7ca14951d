"""An HNSW index over the face embeddings stored with events: search past events by a face, group unknown visitors.

Why a separate, derived index: the event store (SQLite) is the source of truth and keeps each event's embedding;
this index only makes "which past events show this face" fast at any size. It is persisted beside the store
(``<store>.hnsw`` plus ``<store>.hnsw.json`` saying up to which event id it covers) so a restart does not re-add
everything, and it is rebuilt from the store whenever that file is missing, unreadable or does not match the
store (``sync`` adds what is newer). Several processes (the alert stage, the HTTP server) may each hold one:
each writes its snapshot atomically (0600: embeddings are biometric data), and any of them is a valid cache.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

import hnswlib
import numpy as np

from engines.files import atomic_write_bytes
from stream.store.events import EventStore

log = logging.getLogger(__name__)

EF_CONSTRUCTION = 200
M = 16
SAVE_EVERY_S = 30.0  # a busy index is saved at most this often (and on close); a stale file is only a cache
CHUNK = 10_000  # events added per step of a rebuild, between two ``on_progress`` calls (~3 s on 2 cores)


def _normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32).reshape(-1, v.shape[-1] if np.ndim(v) else 1)
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(n, 1e-12)


class EventIndex:
    """Nearest past events of a face; ``sync()`` first to see events stored since the last call."""

    def __init__(self, store: EventStore, path: str | Path | None = None,
                 on_progress: Callable[[], None] | None = None) -> None:
        """``on_progress`` is called between chunks of a long (re)build: a stage heartbeats there, so a rebuild
        of a large store (100k events: ~30 s on 2 cores) is not mistaken for a hung stage."""
        self.store = store
        self.on_progress = on_progress
        self.path = Path(path) if path is not None else store.path.with_name(store.path.name + ".hnsw")
        self.meta_path = self.path.with_name(self.path.name + ".json")
        self.index: hnswlib.Index | None = None
        self.dim = 0
        self.max_id = 0  # every event with an embedding and id <= max_id is in the index
        self.count = 0
        self._dirty_since: float | None = None
        self._lock = threading.Lock()  # the HTTP server searches from several threads
        self._load()
        self.sync()

    # ------------------------------------------------------------------ persistence
    def _load(self) -> None:
        """Use the saved index when it matches the store; otherwise start empty (``sync`` rebuilds)."""
        try:
            meta = json.loads(self.meta_path.read_text())
            dim, max_id, count = int(meta["dim"]), int(meta["max_id"]), int(meta["count"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s: unreadable, rebuilding the event index (%s)", self.meta_path, exc)
            return
        ids, _ = self.store.embeddings()
        if int((ids <= max_id).sum()) != count or count == 0:
            log.info("%s does not match the event store; rebuilding it", self.path)
            return
        try:
            index = hnswlib.Index(space="ip", dim=dim)
            index.load_index(str(self.path), max_elements=count)
        except (RuntimeError, OSError, ValueError) as exc:
            log.warning("%s: unreadable, rebuilding the event index (%s)", self.path, exc)
            return
        if index.get_current_count() != count:
            return
        self.index, self.dim, self.max_id, self.count = index, dim, max_id, count

    def save(self) -> None:
        """Write the index and its metadata atomically, owner-only."""
        with self._lock:
            if self.index is None:
                return
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            self.index.save_index(str(tmp))
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
            atomic_write_bytes(self.meta_path, json.dumps(
                {"dim": self.dim, "max_id": self.max_id, "count": self.count}).encode(), mode=0o600)
            self._dirty_since = None

    def maybe_save(self) -> None:
        if self._dirty_since is not None and time.monotonic() - self._dirty_since >= SAVE_EVERY_S:
            self.save()

    # ------------------------------------------------------------------ updating
    def sync(self) -> int:
        """Add the events stored since the last sync; returns how many were added."""
        ids, vecs = self.store.embeddings(after_id=self.max_id)
        if len(ids) > CHUNK:
            log.info("event index: adding %d events to it (a rebuild)", len(ids))
        added = 0
        for start in range(0, len(ids), CHUNK):
            added += self._add(ids[start:start + CHUNK], vecs[start:start + CHUNK])
            if self.on_progress is not None and len(ids) > CHUNK:
                self.on_progress()
        return added

    def _add(self, ids: np.ndarray, vecs: np.ndarray) -> int:
        newest = int(ids.max())
        with self._lock:
            if self.index is None:
                self.dim = vecs.shape[1]
                self.index = hnswlib.Index(space="ip", dim=self.dim)
                self.index.init_index(max_elements=max(1024, 2 * len(ids)), ef_construction=EF_CONSTRUCTION, M=M)
            keep = np.array([v.shape[0] == self.dim for v in vecs])
            if not keep.all():
                log.warning("skipped %d event embedding(s) of another dimension", int((~keep).sum()))
            ids, vecs = ids[keep], vecs[keep]
            need = self.count + len(ids)
            if need > self.index.get_max_elements():
                self.index.resize_index(max(need, 2 * self.index.get_max_elements()))
            if len(ids):
                self.index.add_items(_normalise(vecs), ids)
            self.count = need
            self.max_id = max(self.max_id, newest)
            if self._dirty_since is None:
                self._dirty_since = time.monotonic()
        return len(ids)

    # ------------------------------------------------------------------ searching
    def search(self, embedding: np.ndarray, k: int = 20, min_similarity: float | None = None,
               exclude: int | None = None) -> list[tuple[int, float]]:
        """(event id, cosine similarity) of the ``k`` most similar past events, best first."""
        with self._lock:
            if self.index is None or self.count == 0:
                return []
            k_eff = min(self.count, k + (1 if exclude is not None else 0))
            self.index.set_ef(max(64, 2 * k_eff))
            labels, dists = self.index.knn_query(_normalise(embedding), k=k_eff)
        out = [(int(i), float(1.0 - d)) for i, d in zip(labels[0], dists[0]) if int(i) != exclude]
        if min_similarity is not None:
            out = [(i, s) for i, s in out if s >= min_similarity]
        return out[:k]

    def __len__(self) -> int:
        return self.count


def visitor_id(store: EventStore, index: EventIndex, embedding: np.ndarray | None, threshold: float) -> int | None:
    """The unknown-visitor id of a face: that of the most similar earlier unknown event at or above
    ``threshold``, else a new one; None without an embedding. Used by the alert stage and ``scan --store``."""
    if embedding is None:
        return None
    index.sync()
    hits = index.search(embedding, k=20, min_similarity=threshold)
    groups = store.unknown_ids(i for i, _ in hits)
    for event_id, _ in hits:  # best first
        if event_id in groups:
            return groups[event_id]
    return store.next_unknown_id()
