"""The watchlist: persons, their face embeddings (SQLite, the source of truth) and an HNSW index.

Crash safety: every change is one SQLite transaction that also bumps ``generation``. The HNSW index is
derived data, saved atomically as ``index.<generation>.hnsw`` after the commit. A reader that finds no
index file for the current generation (a writer died between commit and index save, or is saving right
now) rebuilds the index from the embeddings in SQLite. So a SIGKILL at any point leaves either the old
or the new gallery, both loadable.

Biometric data: the directory is created 0700 and its files 0600.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import hnswlib
import numpy as np

log = logging.getLogger(__name__)

DB_FILE = "gallery.sqlite"
REBUILD_DELETED_SHARE = 0.25  # rebuild the index when this share of its entries are deletions
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 64

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS persons (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    person_id INTEGER NOT NULL REFERENCES persons(id) ON DELETE CASCADE,
    embedding BLOB NOT NULL,
    source TEXT,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_person ON samples(person_id);
"""


class GalleryError(ValueError):
    """A gallery operation that cannot be done (unknown person, wrong dimension, ...)."""


@dataclass(frozen=True)
class Candidate:
    """The best-scoring identity for one probe embedding (before the threshold decision)."""

    identity: str | None
    score: float  # cosine similarity of the best sample of that identity; -1 when the gallery is empty

    def accepted(self, threshold: float) -> str | None:
        """The identity when the score reaches ``threshold``, else None (unknown)."""
        return self.identity if self.identity is not None and accepts(self.score, threshold) else None


def accepts(score: float, threshold: float) -> bool:
    """The one accept rule, for 1:1 and 1:N alike: similar enough means ``score >= threshold``."""
    return score >= threshold


class Gallery:
    """Open (or create) the gallery in ``directory``.

    ``readonly`` readers (the pipeline's match stage) never write: a missing index is rebuilt in memory.
    """

    def __init__(self, directory: str | Path, *, dim: int = 128, readonly: bool = False) -> None:
        self.dir = Path(directory)
        self.dim = dim
        self.readonly = readonly
        if readonly:
            if not (self.dir / DB_FILE).is_file():
                raise GalleryError(f"{self.dir}: no gallery here (missing {DB_FILE})")
            # A plain connection, not mode=ro: after a writer was killed mid-transaction, the first reader
            # must be able to roll back SQLite's hot journal. This object still never writes.
            self.db = sqlite3.connect(self.dir / DB_FILE, timeout=30)
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            os.chmod(self.dir, 0o700)
            self.db = sqlite3.connect(self.dir / DB_FILE, timeout=30)
            os.chmod(self.dir / DB_FILE, 0o600)
            self.db.executescript(SCHEMA)
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('dim', ?)", (str(dim),))
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
            self.db.commit()
        self.db.execute("PRAGMA foreign_keys = ON")
        stored_dim = int(self._meta("dim", str(dim)))
        if stored_dim != dim:
            raise GalleryError(f"{self.dir}: gallery holds {stored_dim}-d embeddings, the embedder makes {dim}-d")
        self.index: hnswlib.Index | None = None
        self._labels_to_person: dict[int, str] = {}
        self.loaded_generation = -1
        self.reload()

    # ----------------------------------------------------------------- state
    def _meta(self, key: str, default: str = "0") -> str:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    @property
    def generation(self) -> int:
        """Bumped by every committed change; cheap to poll for hot reload."""
        return int(self._meta("generation"))

    def _index_path(self, generation: int) -> Path:
        return self.dir / f"index.{generation}.hnsw"

    def _rows(self) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
        rows = self.db.execute(
            "SELECT s.id, p.name, s.embedding FROM samples s JOIN persons p ON p.id = s.person_id ORDER BY s.id"
        ).fetchall()
        labels = np.array([r[0] for r in rows], dtype=np.int64)
        vecs = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(-1, self.dim)
        return labels, vecs, {int(r[0]): r[1] for r in rows}

    def _build_index(self, labels: np.ndarray, vecs: np.ndarray) -> hnswlib.Index:
        index = hnswlib.Index(space="ip", dim=self.dim)
        index.init_index(max_elements=max(64, 2 * len(labels)), ef_construction=HNSW_EF_CONSTRUCTION, M=HNSW_M)
        if len(labels):
            index.add_items(vecs, labels, num_threads=1)
        index.set_ef(HNSW_EF_SEARCH)
        return index

    def reload(self) -> None:
        """(Re)load metadata and the index of the current generation, rebuilding it when absent or broken."""
        gen = self.generation
        labels, vecs, mapping = self._rows()
        index = None
        path = self._index_path(gen)
        if path.is_file():
            try:
                index = hnswlib.Index(space="ip", dim=self.dim)
                index.load_index(str(path), max_elements=max(64, 2 * len(labels)))
                index.set_ef(HNSW_EF_SEARCH)
                if not set(mapping) <= set(index.get_ids_list()):
                    raise ValueError("index does not cover the stored samples")
            except Exception as exc:  # a damaged index is derived data: rebuild, never trust
                log.warning("gallery index %s unusable (%s); rebuilding from the database", path.name, exc)
                index = None
        if index is None:
            index = self._build_index(labels, vecs)
            if not self.readonly:
                self._save_index(index, gen)
        self.index = index
        self._labels_to_person = mapping
        self.loaded_generation = gen

    def _save_index(self, index: hnswlib.Index, generation: int) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".index.", suffix=".tmp")
        os.close(fd)
        try:
            index.save_index(tmp)
            os.chmod(tmp, 0o600)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self._index_path(generation))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        for old in self.dir.glob("index.*.hnsw"):
            if old.name != self._index_path(generation).name:
                old.unlink(missing_ok=True)

    def _bump(self, cur: sqlite3.Cursor) -> int:
        gen = int(cur.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0]) + 1
        cur.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(gen),))
        return gen

    def _require_writable(self) -> None:
        if self.readonly:
            raise GalleryError("gallery opened read-only")

    # ----------------------------------------------------------------- changes
    def enroll(self, name: str, embeddings: np.ndarray, sources: list[str] | None = None) -> int:
        """Add samples for ``name`` (created if new) in one transaction; returns the number added."""
        self._require_writable()
        name = name.strip()
        if not name:
            raise GalleryError("a person's name must not be empty")
        emb = np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1, self.dim)
        if len(emb) == 0:
            raise GalleryError(f"no usable face to enroll for {name!r}")
        if not np.all(np.isfinite(emb)):
            raise GalleryError("embeddings contain NaN or infinity")
        sources = sources or [""] * len(emb)
        now = time.time()
        with self.db:  # one transaction: all samples or none
            cur = self.db.cursor()
            cur.execute("INSERT OR IGNORE INTO persons (name, created) VALUES (?, ?)", (name, now))
            pid = cur.execute("SELECT id FROM persons WHERE name = ?", (name,)).fetchone()[0]
            cur.executemany(
                "INSERT INTO samples (person_id, embedding, source, created) VALUES (?, ?, ?, ?)",
                [(pid, e.tobytes(), s, now) for e, s in zip(emb, sources)],
            )
            gen = self._bump(cur)
        self._after_change(gen)
        return len(emb)

    def remove(self, name: str) -> int:
        """Delete a person and their samples; returns how many samples went. Unknown name -> GalleryError."""
        self._require_writable()
        row = self.db.execute("SELECT id FROM persons WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise GalleryError(f"no person named {name!r} in the gallery")
        with self.db:
            cur = self.db.cursor()
            labels = [r[0] for r in cur.execute("SELECT id FROM samples WHERE person_id = ?", (row[0],))]
            cur.execute("DELETE FROM samples WHERE person_id = ?", (row[0],))
            cur.execute("DELETE FROM persons WHERE id = ?", (row[0],))
            gen = self._bump(cur)
        self._after_change(gen, deleted=labels)
        return len(labels)

    def _after_change(self, gen: int, deleted: list[int] | None = None) -> None:
        """Bring the in-memory index up to the committed state and save it for ``gen``."""
        labels, vecs, mapping = self._rows()
        index = self.index
        assert index is not None
        if deleted:
            for label in deleted:
                index.mark_deleted(label)
        else:
            new = [i for i, lab in enumerate(labels) if int(lab) not in self._labels_to_person]
            if new:
                need = index.get_current_count() + len(new)
                if need > index.get_max_elements():
                    index.resize_index(max(2 * need, 64))
                index.add_items(vecs[new], labels[new], num_threads=1)
        total = index.get_current_count()
        if total and (total - len(labels)) / total > REBUILD_DELETED_SHARE:
            log.info("gallery index: %d of %d entries deleted, rebuilding", total - len(labels), total)
            index = self._build_index(labels, vecs)
        self._save_index(index, gen)
        self.index, self._labels_to_person, self.loaded_generation = index, mapping, gen

    # ----------------------------------------------------------------- queries
    def persons(self) -> list[tuple[str, int]]:
        """(name, number of samples), sorted by name."""
        return [
            (r[0], r[1])
            for r in self.db.execute(
                "SELECT p.name, COUNT(s.id) FROM persons p LEFT JOIN samples s ON s.person_id = p.id "
                "GROUP BY p.id ORDER BY p.name"
            )
        ]

    def __len__(self) -> int:
        return len(self._labels_to_person)

    def search(self, embeddings: np.ndarray, k: int = 20) -> list[Candidate]:
        """Best identity per probe: the k nearest samples, aggregated per person by their best score."""
        emb = np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1, self.dim)
        if len(self) == 0 or len(emb) == 0:
            return [Candidate(None, -1.0) for _ in range(len(emb))]
        k = min(k, len(self))
        assert self.index is not None
        labels, dists = self.index.knn_query(emb, k=k)
        out = []
        for lab_row, dist_row in zip(labels, dists):
            best: dict[str, float] = {}
            for lab, d in zip(lab_row, dist_row):
                person = self._labels_to_person.get(int(lab))
                if person is not None:
                    best[person] = max(best.get(person, -1.0), 1.0 - float(d))
            if not best:
                out.append(Candidate(None, -1.0))
                continue
            person = max(best, key=best.__getitem__)
            out.append(Candidate(person, best[person]))
        return out

    def close(self) -> None:
        self.db.close()
