"""What every request handler shares: the config, the stores (one connection per thread), the face models.

Why per-thread store connections: FastAPI runs plain ``def`` handlers on a thread pool, and one SQLite
connection must not be used by two threads at once. The face models are loaded on first use (a server that
only shows events never pays for them) and run one request at a time (2 cores: parallel inference would only
thrash). Gallery writes from this server are serialised by a lock; the pipeline's match stage sees them
through the gallery's generation counter, as it sees ``facewatch gallery`` changes.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engines.analyzer import FaceAnalyzer
from stream.config import Config
from stream.loaders import photo_analyzer
from stream.store.event_index import EventIndex
from stream.store.events import EventStore
from stream.store.gallery import DB_FILE, Gallery
from stream.store.live import LiveDir


class FairLock:
    """A lock taken in arrival order. ``threading.Lock`` is not fair: under load one identify request could lose
    the race for the models several times in a row (p99 of several turns); a ticket queue bounds the wait to the
    requests that arrived before it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next = 0  # next ticket to hand out
        self._serving = 0  # ticket allowed in now

    def __enter__(self) -> "FairLock":
        with self._cond:
            ticket = self._next
            self._next += 1
            self._cond.wait_for(lambda: self._serving == ticket)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()


class ApiState:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.token = cfg.api.effective_token()
        self.store_path = cfg.resolve(cfg.alerts.store)
        self.snap_root = cfg.resolve(cfg.alerts.snapshots).resolve()
        self.gallery_dir = cfg.resolve(cfg.matching.gallery)
        self.live = LiveDir(cfg.resolve(cfg.live.dir))
        self._local = threading.local()
        self._index: EventIndex | None = None
        self._index_lock = threading.Lock()
        self._analyzer: FaceAnalyzer | None = None
        self._load_lock = threading.Lock()
        self.analyzer_lock = FairLock()
        self.gallery_lock = threading.Lock()

    # ------------------------------------------------------------------ event store
    def store(self) -> EventStore:
        """This thread's connection to the event store (created, owner-only, when the pipeline has not yet)."""
        st = getattr(self._local, "store", None)
        if st is None:
            st = self._local.store = EventStore(self.store_path)
        return st

    def index(self) -> EventIndex:
        """The event index (search by face), brought up to date with the store."""
        with self._index_lock:
            if self._index is None:
                self._index = EventIndex(EventStore(self.store_path))
            self._index.sync()
            return self._index

    # ------------------------------------------------------------------ models
    def analyzer(self) -> FaceAnalyzer:
        with self._load_lock:
            if self._analyzer is None:
                self._analyzer = photo_analyzer(self.cfg)
            return self._analyzer

    # ------------------------------------------------------------------ gallery
    def gallery_exists(self) -> bool:
        return (self.gallery_dir / DB_FILE).is_file()

    def gallery_reader(self) -> Gallery | None:
        """This thread's read-only gallery, reloaded when its generation changed; None when there is none.
        (Per thread because a gallery's SQLite connection belongs to the thread that opened it.)"""
        g = getattr(self._local, "gallery", None)
        if g is None:
            if not self.gallery_exists():
                return None
            g = self._local.gallery = Gallery(self.gallery_dir, readonly=True, **self.cfg.gallery_args())
        elif g.generation != g.loaded_generation:
            g.reload()
        return g

    @contextmanager
    def gallery_writer(self) -> Iterator[Gallery]:
        """The gallery opened for writing (created when missing), one writer of this server at a time."""
        with self.gallery_lock:
            g = Gallery(self.gallery_dir, **self.cfg.gallery_args())
            try:
                yield g
            finally:
                g.close()

    def snapshot_file(self, path: str | None) -> Path | None:
        """A stored snapshot path, only when it really lies under ``alerts.snapshots`` and is a regular file:
        no path from the database (or a request) reaches the filesystem unchecked."""
        if not path:
            return None
        p = Path(path).resolve()
        if not p.is_relative_to(self.snap_root) or not p.is_file():
            return None
        return p

    def close(self) -> None:
        with self._index_lock:
            if self._index is not None:
                try:
                    self._index.save()
                except OSError:
                    pass
                self._index.store.close()
