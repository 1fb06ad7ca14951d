"""The watchlist: persons, their face embeddings (SQLite, the source of truth) and an HNSW index.

Crash safety: every change is one SQLite transaction that also bumps ``generation``. The HNSW index is
derived data, saved atomically as ``index.<generation>.hnsw`` after the commit. A reader that finds no
index file for the current generation (a writer died between commit and index save, or is saving right
now) rebuilds the index from the embeddings in SQLite. So a SIGKILL at any point leaves either the old
or the new gallery, both loadable. A new gallery's database is built under a temporary name and linked
into place complete, so a killed first enrollment never leaves a half-made ``gallery.sqlite`` either.

Never damaged by an error: a writer initialises only a directory that does not exist yet or is empty.
Anything else that is not a valid gallery (a zero-byte or corrupt ``gallery.sqlite``, an SQLite file without
our tables, index files without a database, a read-only directory or file) is a ``GalleryError`` naming the
path, raised before a single file is touched. ``check`` diagnoses a gallery without opening it as a
``Gallery``; ``repair`` rebuilds the index from the rows, and only when asked.

Operator feedback lives in the same database, so it shares the crash safety and the one-file backup, and no
extra file appears in the directory: negative samples ("this face is NOT person X", which ``search`` honours) and
a face-chip thumbnail per person. Both tables are keyed by the person's row id, not their name, so ``rename`` is
one UPDATE and removing a person takes them along. Galleries made before these tables existed get them the
first time a writer opens them (``_migrate``); a read-only reader of such a gallery just sees no feedback.

Biometric data: the directory is created 0700 and its files 0600.
"""
from __future__ import annotations

import logging
import os
import re
import sqlite3
import stat
import tempfile
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import hnswlib
import numpy as np

from engines.aggregate import templates as mean_templates

log = logging.getLogger(__name__)

DB_FILE = "gallery.sqlite"
REBUILD_DELETED_SHARE = 0.25  # rebuild the index when this share of its entries are deletions
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 64
NAME_MAX_CHARS = 128

SQLITE_MAGIC = b"SQLite format 3\x00"
INDEX_RE = re.compile(r"^index\.(\d+)\.hnsw$")
# Our own temporary files (a writer killed mid-save leaves them); they do not make a directory "non-empty".
TEMP_RE = re.compile(r"^\.(index|gallery-init)\..*\.tmp(-journal)?$")
# The tables and the columns this code reads: an SQLite file without them is not ours to write into.
REQUIRED_COLUMNS = {"meta": {"key", "value"}, "persons": {"id", "name"}, "samples": {"id", "person_id", "embedding"}}

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE persons (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    person_id INTEGER NOT NULL REFERENCES persons(id) ON DELETE CASCADE,
    embedding BLOB NOT NULL,
    source TEXT,
    created REAL NOT NULL,
    embedder TEXT,
    crop BLOB
);
CREATE INDEX samples_person ON samples(person_id);
"""
# Operator feedback, added after the first galleries were made: ``IF NOT EXISTS`` so that the same script both
# creates a new gallery and migrates an old one.
FEEDBACK_SCHEMA = """
CREATE TABLE IF NOT EXISTS negatives (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    person_id INTEGER NOT NULL REFERENCES persons(id) ON DELETE CASCADE,
    embedding BLOB NOT NULL,
    source TEXT,
    created REAL NOT NULL,
    crop BLOB
);
CREATE INDEX IF NOT EXISTS negatives_person ON negatives(person_id);
CREATE TABLE IF NOT EXISTS thumbnails (
    person_id INTEGER PRIMARY KEY REFERENCES persons(id) ON DELETE CASCADE,
    jpeg BLOB NOT NULL,
    updated REAL NOT NULL
);
"""
# Columns added after the first galleries: (table, column, type); a writer adds those that are missing.
LATE_COLUMNS = (("samples", "embedder", "TEXT"), ("samples", "crop", "BLOB"), ("negatives", "crop", "BLOB"))
#: What made the vectors of a gallery from before embedder records: every such gallery was made by dlib.
LEGACY_EMBEDDER = "fast:dlib_resnet_v1"
CROP_JPEG_QUALITY = 95  # kept face crops: enough for reembed to reproduce a vector (cosine > 0.99, tested)
# Optional tables (absent from galleries made before them) and the columns this code reads when they are there.
FEEDBACK_COLUMNS = {"negatives": {"id", "person_id", "embedding"}, "thumbnails": {"person_id", "jpeg"}}
JPEG_MAGIC = b"\xff\xd8\xff"
THUMBNAIL_MAX_BYTES = 1 << 20  # a face chip is a few KiB; a megabyte is a whole photo sent by mistake


class GalleryError(ValueError):
    """A gallery operation that cannot be done (unknown person, wrong dimension, damaged files, ...)."""


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


# --------------------------------------------------------------------- names
def _shown(name: str) -> str:
    """A name for an error message: quoted, control characters visible, cut when absurdly long."""
    return repr(name if len(name) <= 40 else name[:40] + "...")


def normalize_name(name: str) -> str:
    """The one spelling of a person's name, used by every method that takes one.

    NFC (a composed and a decomposed "é" are the same person), surrounding spaces stripped, inner runs of
    whitespace made one space. Refused with the reason: empty, control or format characters (tab, newline,
    zero-width, ...: invisible in a list, so two "identical" names could differ), path separators (names end
    up in file names of snapshots and exports), more than ``NAME_MAX_CHARS`` characters.
    """
    if not isinstance(name, str):
        raise GalleryError(f"a person's name must be text, not {type(name).__name__}")
    text = unicodedata.normalize("NFC", name)
    bad = next((c for c in text if unicodedata.category(c) in ("Cc", "Cf")), None)
    if bad is not None:
        raise GalleryError(f"name {_shown(name)}: contains a control character (U+{ord(bad):04X}); use plain text")
    if "/" in text or "\\" in text:
        raise GalleryError(f"name {_shown(name)}: must not contain a path separator ('/' or '\\')")
    text = " ".join(text.split())
    if not text:
        raise GalleryError("a person's name must not be empty")
    if len(text) > NAME_MAX_CHARS:
        raise GalleryError(f"name {_shown(text)}: {len(text)} characters, at most {NAME_MAX_CHARS} allowed")
    return text


# --------------------------------------------------------------------- the state on disk
def _writable(path: Path) -> bool:
    """Whether we may write ``path``. Root ignores permission bits, so for root a file or directory whose
    write bits are all off counts as read-only too: someone made it so on purpose."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    if not os.access(path, os.W_OK):
        return False
    return os.geteuid() != 0 or bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _foreign_entries(directory: Path) -> list[str]:
    """Entries of ``directory`` that are not our own temporary leftovers (sorted)."""
    return sorted(e.name for e in directory.iterdir() if not TEMP_RE.match(e.name))


def _index_files(directory: Path) -> dict[int, Path]:
    """``index.<generation>.hnsw`` files by generation."""
    out = {}
    for p in directory.iterdir():
        m = INDEX_RE.match(p.name)
        if m:
            out[int(m.group(1))] = p
    return out


def _connect(db_path: Path) -> sqlite3.Connection:
    """Open and validate an existing gallery database; ``GalleryError`` naming the file when it is not one.

    A plain connection, not ``mode=ro``: after a writer was killed mid-transaction, the first reader must be
    able to roll back SQLite's hot journal. Nothing here writes otherwise.
    """
    if not db_path.is_file():
        raise GalleryError(f"{db_path}: not a regular file")
    try:
        with open(db_path, "rb") as fh:
            header = fh.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise GalleryError(f"{db_path}: cannot read ({exc.strerror or exc})") from None
    if not header:
        raise GalleryError(f"{db_path}: empty file (0 bytes), not a gallery database")
    if header != SQLITE_MAGIC:
        raise GalleryError(f"{db_path}: not an SQLite database (unrecognised header)")
    db = sqlite3.connect(db_path, timeout=30)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables & set(REQUIRED_COLUMNS):
            raise GalleryError(f"{db_path}: an SQLite database but not a facewatch gallery (no gallery tables)")
        for table, needed in {**REQUIRED_COLUMNS, **FEEDBACK_COLUMNS}.items():
            if table not in tables:
                if table in FEEDBACK_COLUMNS:
                    continue  # a gallery from before operator feedback: migrated by the first writer
                raise GalleryError(f"{db_path}: damaged gallery database (table {table!r} is missing)")
            columns = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
            if not needed <= columns:
                raise GalleryError(f"{db_path}: damaged gallery database (table {table!r} lacks "
                                   f"{', '.join(sorted(needed - columns))})")
        meta = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('dim', 'generation')").fetchall())
        for key in ("dim", "generation"):
            if not str(meta.get(key, "")).isdigit():
                raise GalleryError(f"{db_path}: damaged gallery metadata ({key!r} is missing or not a number)")
        db.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:
        db.close()
        raise GalleryError(_sqlite_problem(db_path, exc)) from None
    except GalleryError:
        db.close()
        raise
    return db


def _sqlite_problem(db_path: Path, exc: sqlite3.DatabaseError) -> str:
    """One line for an SQLite failure: "corrupt" only when SQLite says the file is damaged (not when it is
    locked or read-only)."""
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and "malformed" not in text:
        return f"{db_path}: cannot use the gallery database ({text})"
    return f"{db_path}: corrupt SQLite database ({text})"


def _initialisable(directory: Path) -> bool:
    """A writer may create a gallery only where nothing is: no directory yet, or an empty one."""
    return not directory.exists() or (directory.is_dir() and not _foreign_entries(directory))


def _refuse_state(directory: Path, *, write: bool, create: bool) -> bool:
    """Raise ``GalleryError`` for every state that must not be touched; True when the caller is to initialise.

    Touches nothing: safe to call before slow work (the CLI runs it before analysing photos).
    """
    if directory.exists() and not directory.is_dir():
        raise GalleryError(f"{directory}: not a directory")
    db_path = directory / DB_FILE
    if not db_path.exists() and not db_path.is_symlink():
        if not (write and create):
            raise GalleryError(f"no gallery at {directory}")
        if not _initialisable(directory):
            others = _foreign_entries(directory)
            raise GalleryError(f"{directory}: no {DB_FILE} but {len(others)} other file(s) ({', '.join(others[:3])}); "
                               "not a gallery, refusing to initialise one over it")
        parent = directory
        while not parent.exists():
            parent = parent.parent
        if not _writable(parent):
            raise GalleryError(f"{parent}: read-only directory, cannot create the gallery {directory}")
        return True
    if not db_path.is_file():
        raise GalleryError(f"{db_path}: not a regular file")
    if write:
        for p in (directory, db_path):
            if not _writable(p):
                raise GalleryError(f"{p}: read-only, the gallery cannot be changed")
    return False


def _initialise(directory: Path, dim: int, embedder: str) -> None:
    """Create an empty gallery: the database is built under a temporary name and linked into place whole."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".gallery-init.", suffix=".tmp")  # 0600
        os.close(fd)
    except OSError as exc:
        raise GalleryError(f"{directory}: cannot create the gallery ({exc.strerror or exc})") from None
    try:
        db = sqlite3.connect(tmp)
        try:
            db.executescript(SCHEMA + FEEDBACK_SCHEMA)
            db.executemany("INSERT INTO meta VALUES (?, ?)", [("dim", str(dim)), ("generation", "0"),
                                                              ("embedder", embedder)])
            db.commit()
        finally:
            db.close()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        try:
            os.link(tmp, directory / DB_FILE)  # fails if another writer got there first: then use theirs
        except FileExistsError:
            pass
    except (OSError, sqlite3.Error) as exc:
        raise GalleryError(f"{directory}: cannot create the gallery ({exc})") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def writer_preflight(directory: str | Path) -> None:
    """Raise ``GalleryError`` now if a writer could not use ``directory``, without creating or changing anything.

    For commands that do slow work (analysing photos) before they write: bad gallery state is reported first."""
    d = Path(directory)
    if not _refuse_state(d, write=True, create=True):
        _connect(d / DB_FILE).close()


def _has_table(db: sqlite3.Connection, table: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() is not None


def _check_thumbnail(name: str, jpeg: bytes) -> bytes:
    """The thumbnail as bytes, or ``GalleryError``: it must be a JPEG (the web UI serves it as one) of sane size."""
    if not isinstance(jpeg, (bytes, bytearray, memoryview)):
        raise GalleryError(f"thumbnail for {name!r}: must be JPEG bytes, not {type(jpeg).__name__}")
    data = bytes(jpeg)
    if not data.startswith(JPEG_MAGIC):
        raise GalleryError(f"thumbnail for {name!r}: not a JPEG image ({len(data)} bytes without the JPEG header)")
    if len(data) > THUMBNAIL_MAX_BYTES:
        raise GalleryError(f"thumbnail for {name!r}: {len(data)} bytes, at most {THUMBNAIL_MAX_BYTES} allowed "
                           "(a face chip, not a whole photo)")
    return data


@contextmanager
def _sqlite_errors(db_path: Path) -> Iterator[None]:
    """SQLite failures mid-operation (a corrupt page, a locked or read-only file) as one-line GalleryErrors."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        raise GalleryError(_sqlite_problem(db_path, exc)) from None


# --------------------------------------------------------------------- the gallery
class Gallery:
    """Open (or, for a writer, create) the gallery in ``directory``.

    ``readonly`` readers (the pipeline's match stage) never write: a missing index is rebuilt in memory.
    ``create=False`` writers (removal) refuse a directory without a gallery instead of making one.
    """

    def __init__(self, directory: str | Path, *, dim: int | None = None, embedder: str | None = None,
                 readonly: bool = False, create: bool = True) -> None:
        """``embedder``: the profile id of the vectors this caller makes or searches with
        (``FaceEmbedder.model_id``); a gallery of another embedder's vectors is refused. None = any (tools that
        only read or manage rows); a new gallery then records ``LEGACY_EMBEDDER``. ``dim``: likewise."""
        self.dir = Path(directory)
        self.path = self.dir / DB_FILE
        self.readonly = readonly
        if _refuse_state(self.dir, write=not readonly, create=create):
            _initialise(self.dir, dim or 128, embedder or LEGACY_EMBEDDER)
        self.db = _connect(self.path)
        self._expected_embedder = embedder
        try:
            self.dim = int(self._meta("dim", str(dim or 128)))
            self.embedder = self._meta("embedder", LEGACY_EMBEDDER)
            if embedder is not None and self.embedder != embedder:
                raise GalleryError(f"{self.path}: gallery holds vectors of {self.embedder!r}, this configuration makes "
                                   f"{embedder!r}; run `facewatch gallery reembed` to move it (or use its profile)")
            if dim is not None and self.dim != dim:
                raise GalleryError(f"{self.path}: gallery holds {self.dim}-d embeddings, the embedder makes {dim}-d")
            if not readonly:
                self._migrate()
            self.index: hnswlib.Index | None = None
            self._labels_to_person: dict[int, str] = {}
            # Loaded with the index: each vetoing person's negative samples, and the positive samples of those
            # same persons (few), so that ``search`` compares both exactly, not through the approximate index.
            self._negatives: dict[str, np.ndarray] = {}
            self._positives: dict[str, np.ndarray] = {}
            self.loaded_generation = -1
            self.reload()
        except BaseException:
            self.db.close()
            raise

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        """Add the operator-feedback tables to a gallery made before them, keeping every row; one transaction.

        Not a change of content, so the generation stays: readers have nothing to reload."""
        with _sqlite_errors(self.path):
            if not all(_has_table(self.db, t) for t in FEEDBACK_COLUMNS):
                log.info("%s: adding the tables for negative samples and thumbnails", self.path)
                self._script("BEGIN IMMEDIATE;" + FEEDBACK_SCHEMA + "COMMIT;")
            missing = [(t, c, ty) for t, c, ty in LATE_COLUMNS
                       if c not in {r[1] for r in self.db.execute(f"PRAGMA table_info({t})")}]
            has_embedder = self.db.execute("SELECT 1 FROM meta WHERE key = 'embedder'").fetchone() is not None
            if missing or not has_embedder:
                log.info("%s: recording the embedder of its vectors and keeping face crops from now on", self.path)
                adds = "".join(f"ALTER TABLE {t} ADD COLUMN {c} {ty};" for t, c, ty in missing)
                self._script(f"BEGIN IMMEDIATE;{adds}INSERT OR IGNORE INTO meta VALUES ('embedder', "
                             f"'{LEGACY_EMBEDDER}');UPDATE samples SET embedder = '{LEGACY_EMBEDDER}' "
                             "WHERE embedder IS NULL;COMMIT;")

    def _script(self, script: str) -> None:
        try:
            self.db.executescript(script)
        except BaseException:
            if self.db.in_transaction:
                self.db.rollback()
            raise

    # ----------------------------------------------------------------- state
    def _meta(self, key: str, default: str = "0") -> str:
        with _sqlite_errors(self.path):
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    @property
    def generation(self) -> int:
        """Bumped by every committed change; cheap to poll for hot reload."""
        return int(self._meta("generation"))

    def _index_path(self, generation: int) -> Path:
        return self.dir / f"index.{generation}.hnsw"

    def _rows(self) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
        return _read_rows(self.db, self.path, self.dim)

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
        self.dim = int(self._meta("dim", str(self.dim)))
        self.embedder = self._meta("embedder", LEGACY_EMBEDDER)
        if self._expected_embedder is not None and self.embedder != self._expected_embedder:
            raise GalleryError(f"{self.path}: gallery now holds vectors of {self.embedder!r} (reembedded), this "
                               f"configuration makes {self._expected_embedder!r}")
        labels, vecs, mapping = self._rows()
        index = None
        path = self._index_path(gen)
        if path.is_file():
            try:
                index = _load_index(path, self.dim, len(labels))
                if not set(mapping) <= set(index.get_ids_list()):
                    raise ValueError("index does not cover the stored samples")
            except Exception as exc:  # a damaged index is derived data: rebuild, never trust
                log.warning("gallery index %s unusable (%s); rebuilding from the database", path.name, exc)
                index = None
        if index is None:
            index = self._build_index(labels, vecs)
            if not self.readonly:
                self._save_index(index, gen)
        self._load_feedback(labels, vecs, mapping)
        self.index = index
        self._labels_to_person = mapping
        self.loaded_generation = gen

    def rebuild_index(self) -> Path:
        """Build the index of the current generation from the rows and save it (``repair``); its path."""
        self._require_writable()
        gen = self.generation
        labels, vecs, mapping = self._rows()
        index = self._build_index(labels, vecs)
        self._save_index(index, gen)
        self._load_feedback(labels, vecs, mapping)
        self.index, self._labels_to_person, self.loaded_generation = index, mapping, gen
        return self._index_path(gen)

    def _load_feedback(self, labels: np.ndarray, vecs: np.ndarray, mapping: dict[int, str]) -> None:
        """Each person's template (the track rule compares with it), the negative samples, and the positive
        samples of the persons that have negatives, for ``search``."""
        if len(labels):
            owners = np.array([mapping[int(lab)] for lab in labels], dtype=object)
            names, temps = mean_templates(vecs, owners)
            self._template_names, self._templates = [str(n) for n in names], temps
        else:
            self._template_names, self._templates = [], np.zeros((0, self.dim), np.float32)
        self._negatives = _read_negatives(self.db, self.path, self.dim)
        if not self._negatives:
            self._positives = {}
            return
        names = np.array([mapping[int(lab)] for lab in labels], dtype=object)
        self._positives = {n: vecs[names == n] for n in self._negatives}

    def _save_index(self, index: hnswlib.Index, generation: int) -> None:
        """Write atomically (temp file, fsync, rename), then drop the index files of older generations.

        Newer ones are left alone: they belong to a writer that committed after us."""
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
        for gen, old in _index_files(self.dir).items():
            if gen < generation:
                old.unlink(missing_ok=True)

    def _bump(self, cur: sqlite3.Cursor) -> int:
        gen = int(cur.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0]) + 1
        cur.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(gen),))
        return gen

    def _require_writable(self) -> None:
        if self.readonly:
            raise GalleryError(f"{self.dir}: gallery opened read-only")

    # ----------------------------------------------------------------- changes
    def enroll(self, name: str, embeddings: np.ndarray, sources: list[str] | None = None,
               thumbnail: bytes | None = None, crops: list[np.ndarray | bytes | None] | None = None) -> int:
        """Add samples for ``name`` (created if new) in one transaction; returns the number added.

        ``thumbnail`` (a JPEG face chip) becomes the person's picture only when they have none yet: the first
        enrollment chooses it, later ones add samples without changing the face the operators know.
        ``crops``: each sample's canonical face crop (BGR array or JPEG bytes), kept owner-only with the sample
        so that ``reembed`` can move the gallery to another model without the original photos."""
        self._require_writable()
        name = normalize_name(name)
        emb = self._embeddings(embeddings)
        if len(emb) == 0:
            raise GalleryError(f"no usable face to enroll for {name!r}")
        jpeg = None if thumbnail is None else _check_thumbnail(name, thumbnail)
        sources = sources or [""] * len(emb)
        blobs = _crop_blobs(crops, len(emb), name)
        now = time.time()
        with _sqlite_errors(self.path), self.db:  # one transaction: all samples or none
            cur = self.db.cursor()
            cur.execute("INSERT OR IGNORE INTO persons (name, created) VALUES (?, ?)", (name, now))
            pid = cur.execute("SELECT id FROM persons WHERE name = ?", (name,)).fetchone()[0]
            cur.executemany(
                "INSERT INTO samples (person_id, embedding, source, created, embedder, crop) VALUES (?, ?, ?, ?, ?, ?)",
                [(pid, e.tobytes(), s, now, self.embedder, b) for e, s, b in zip(emb, sources, blobs)],
            )
            if jpeg is not None:
                cur.execute("INSERT OR IGNORE INTO thumbnails (person_id, jpeg, updated) VALUES (?, ?, ?)",
                            (pid, jpeg, now))
            gen = self._bump(cur)
        self._after_change(gen)
        return len(emb)

    def remove(self, name: str) -> int:
        """Delete a person with their samples, negative samples and thumbnail; returns how many samples went.
        Unknown name -> GalleryError."""
        self._require_writable()
        name = normalize_name(name)
        with _sqlite_errors(self.path):
            pid = self._person_id(name)
            with self.db:
                cur = self.db.cursor()
                labels = [r[0] for r in cur.execute("SELECT id FROM samples WHERE person_id = ?", (pid,))]
                cur.execute("DELETE FROM samples WHERE person_id = ?", (pid,))
                # Explicitly, not by ON DELETE CASCADE: that needs PRAGMA foreign_keys, which a tool may leave off.
                cur.execute("DELETE FROM negatives WHERE person_id = ?", (pid,))
                cur.execute("DELETE FROM thumbnails WHERE person_id = ?", (pid,))
                cur.execute("DELETE FROM persons WHERE id = ?", (pid,))
                gen = self._bump(cur)
        self._after_change(gen, deleted=labels)
        return len(labels)

    def rename(self, old: str, new: str) -> int:
        """Give ``old`` the name ``new``, with all their samples, negative samples and thumbnail; returns the number
        of samples. One UPDATE of the person's row: samples, feedback and index labels refer to the row id, so
        the index stays as it is. Refused (``GalleryError``, nothing changed): an unknown ``old``, an invalid
        ``new``, a ``new`` that is already enrolled (two persons are never merged by a rename)."""
        self._require_writable()
        old, new = normalize_name(old), normalize_name(new)
        with _sqlite_errors(self.path):
            pid = self._person_id(old)
            if new == old:
                raise GalleryError(f"cannot rename {old!r} to {new!r}: that is already their name")
            conflict = GalleryError(f"cannot rename {old!r} to {new!r}: {new!r} is already enrolled "
                                    f"(persons are not merged; remove one of them first)")
            if self.db.execute("SELECT 1 FROM persons WHERE name = ?", (new,)).fetchone():
                raise conflict
            try:
                with self.db:
                    cur = self.db.cursor()
                    if cur.execute("UPDATE persons SET name = ? WHERE id = ?", (new, pid)).rowcount != 1:
                        raise GalleryError(f"no person named {old!r} in the gallery")  # removed meanwhile
                    samples = cur.execute("SELECT COUNT(*) FROM samples WHERE person_id = ?", (pid,)).fetchone()[0]
                    gen = self._bump(cur)
            except sqlite3.IntegrityError:  # another writer enrolled ``new`` since the check above
                raise conflict from None
        self._after_change(gen)
        return samples

    def add_negative(self, name: str, embedding: np.ndarray, source: str | None = None,
                     crop: np.ndarray | bytes | None = None) -> int:
        """Record that the face ``embedding`` is NOT ``name`` (an operator rejected a match); returns how many
        negative samples ``name`` has now. ``search`` no longer gives ``name`` to faces at least as close to one
        of these as to ``name``'s own samples. ``source`` says where it came from (an event id, a file)."""
        self._require_writable()
        name = normalize_name(name)
        emb = self._embeddings(embedding)
        if len(emb) != 1:
            raise GalleryError(f"a negative sample for {name!r} is one embedding, got {len(emb)}")
        with _sqlite_errors(self.path):
            pid = self._person_id(name)
            with self.db:
                cur = self.db.cursor()
                cur.execute("INSERT INTO negatives (person_id, embedding, source, created, crop) VALUES (?, ?, ?, ?, ?)",
                            (pid, emb[0].tobytes(), source, time.time(), _crop_blobs([crop], 1, name)[0]))
                count = cur.execute("SELECT COUNT(*) FROM negatives WHERE person_id = ?", (pid,)).fetchone()[0]
                gen = self._bump(cur)
        self._after_change(gen)
        return count

    def set_thumbnail(self, name: str, jpeg: bytes) -> None:
        """Make the JPEG face chip ``jpeg`` the picture of ``name`` (replacing any). Unknown name -> GalleryError."""
        self._require_writable()
        name = normalize_name(name)
        data = _check_thumbnail(name, jpeg)
        with _sqlite_errors(self.path):
            pid = self._person_id(name)
            with self.db:
                cur = self.db.cursor()
                cur.execute("INSERT OR REPLACE INTO thumbnails (person_id, jpeg, updated) VALUES (?, ?, ?)",
                            (pid, data, time.time()))
                gen = self._bump(cur)  # a change like any other: whoever shows the gallery sees it is new
        self._after_change(gen)

    def _embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """``N x dim`` float32 rows, or ``GalleryError`` (wrong size, NaN or infinity)."""
        arr = np.asarray(embeddings, dtype=np.float32)
        if arr.size % self.dim:
            raise GalleryError(f"embeddings of {arr.size} values do not split into {self.dim}-d vectors")
        emb = np.ascontiguousarray(arr).reshape(-1, self.dim)
        if not np.all(np.isfinite(emb)):
            raise GalleryError("embeddings contain NaN or infinity")
        return emb

    def _person_id(self, name: str) -> int:
        """The row id of the (normalised) ``name``; ``GalleryError`` when there is no such person."""
        row = self.db.execute("SELECT id FROM persons WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise GalleryError(f"no person named {name!r} in the gallery")
        return int(row[0])

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
        try:
            self._save_index(index, gen)
        except OSError as exc:  # the change is committed; the index is derived data that readers rebuild
            log.warning("%s: the change is saved, but its index file could not be written (%s); readers rebuild it "
                        "(facewatch gallery repair writes it)", self.dir, exc.strerror or exc)
        self._load_feedback(labels, vecs, mapping)
        self.index, self._labels_to_person, self.loaded_generation = index, mapping, gen

    # ----------------------------------------------------------------- queries
    def persons(self) -> list[tuple[str, int]]:
        """(name, number of samples), sorted by name."""
        with _sqlite_errors(self.path):
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
        """Best identity per probe: the k nearest samples, aggregated per person by their best score.

        Operator feedback: an identity is passed over for a probe that is at least as similar to one of that
        person's negative samples as to their best sample (``_vetoed``); the next best identity is the candidate.
        When the k nearest samples name only vetoed persons, the search looks further (4k, 16k, ... samples), so
        a veto never hides someone else who is close; with nobody left the probe has no candidate (score -1).
        """
        emb = np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1, self.dim)
        if len(self) == 0 or len(emb) == 0:
            return [Candidate(None, -1.0) for _ in range(len(emb))]
        k = min(k, len(self))
        out = []
        for q, ranking in zip(emb, self._ranked(emb, k)):
            pick, wider = self._first_allowed(q, ranking), k
            while pick is None and ranking and wider < len(self):  # all near persons vetoed: look further
                wider = min(len(self), 4 * wider)
                ranking = self._ranked(q[None], wider)[0]
                pick = self._first_allowed(q, ranking)
            out.append(Candidate(*pick) if pick is not None else Candidate(None, -1.0))
        return out

    def search_templates(self, vectors: np.ndarray) -> list[Candidate]:
        """Best identity per probe by the track rule: cosine of the probe (a track's mean embedding,
        ``engines.aggregate.track_vector``) with each person's template (mean of their samples), exactly (a
        matrix product: 10,000 persons x 256-d is well under a millisecond per probe). Negative samples veto as
        in ``search``: the best person not vetoed is the candidate."""
        q = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if not self._template_names or len(q) == 0:
            return [Candidate(None, -1.0) for _ in range(len(q))]
        sims = q @ self._templates.T
        out = []
        for row, probe in zip(sims, q):
            pick = next(((self._template_names[j], float(row[j])) for j in np.argsort(-row, kind="stable")
                         if not self._vetoed(self._template_names[j], probe)), None)
            out.append(Candidate(*pick) if pick is not None else Candidate(None, -1.0))
        return out

    def kept_crops(self) -> tuple[list[tuple[int, bytes | None]], list[tuple[int, bytes | None]]]:
        """(sample id, kept face crop JPEG or None) of every sample, and of every negative sample."""
        with _sqlite_errors(self.path):
            samples = [(int(r[0]), r[1]) for r in self.db.execute("SELECT id, crop FROM samples ORDER BY id")]
            negatives = [(int(r[0]), r[1]) for r in self.db.execute("SELECT id, crop FROM negatives ORDER BY id")] \
                if _has_table(self.db, "negatives") else []
        return samples, negatives

    def reembed(self, embed_crops, embedder: str, dim: int, *, drop_uncropped: bool = False) -> dict[str, int]:
        """Move every vector to another embedder (``embed_crops``: BGR crops ``[N, S, S, 3]`` -> ``[N, dim]``),
        re-embedding the kept face crops, in one transaction: all vectors change or none.

        Samples without a kept crop (enrolled before crops were kept) cannot be moved: refused, naming how many,
        unless ``drop_uncropped`` (they are then deleted; a person left with no sample is removed). Negative samples
        without a crop are dropped either way (they are operator feedback, counted in the result)."""
        self._require_writable()
        samples, negatives = self.kept_crops()
        bare = [sid for sid, blob in samples if blob is None]
        if bare and not drop_uncropped:
            raise GalleryError(f"{self.dir}: {len(bare)} of {len(samples)} samples have no kept face crop (enrolled "
                               "before crops were kept); re-enroll those persons from photos, or pass --drop-uncropped")
        keep = [(sid, blob) for sid, blob in samples if blob is not None]
        keep_neg = [(nid, blob) for nid, blob in negatives if blob is not None]

        def vectors(rows: list[tuple[int, bytes | None]]) -> np.ndarray:
            if not rows:
                return np.zeros((0, dim), np.float32)
            crops = np.stack([decode_crop(b) for _, b in rows])  # type: ignore[arg-type]
            out = np.asarray(embed_crops(crops), dtype=np.float32)
            if out.shape != (len(rows), dim) or not np.all(np.isfinite(out)):
                raise GalleryError(f"the new embedder gave {out.shape} vectors, expected ({len(rows)}, {dim})")
            return out

        new, new_neg = vectors(keep), vectors(keep_neg)
        with _sqlite_errors(self.path), self.db:
            cur = self.db.cursor()
            cur.executemany("DELETE FROM samples WHERE id = ?", [(sid,) for sid in bare])
            cur.executemany("DELETE FROM negatives WHERE id = ?", [(nid,) for nid, b in negatives if b is None])
            cur.executemany("UPDATE samples SET embedding = ?, embedder = ? WHERE id = ?",
                            [(v.tobytes(), embedder, sid) for v, (sid, _) in zip(new, keep)])
            cur.executemany("UPDATE negatives SET embedding = ? WHERE id = ?",
                            [(v.tobytes(), nid) for v, (nid, _) in zip(new_neg, keep_neg)])
            emptied = cur.execute("DELETE FROM persons WHERE id NOT IN (SELECT person_id FROM samples)").rowcount
            cur.execute("UPDATE meta SET value = ? WHERE key = 'dim'", (str(dim),))
            cur.execute("INSERT OR REPLACE INTO meta VALUES ('embedder', ?)", (embedder,))
            gen = self._bump(cur)
        self.dim, self.embedder = dim, embedder
        labels, vecs, mapping = self._rows()
        index = self._build_index(labels, vecs)
        self._save_index(index, gen)
        self._load_feedback(labels, vecs, mapping)
        self.index, self._labels_to_person, self.loaded_generation = index, mapping, gen
        return {"samples": len(keep), "negatives": len(keep_neg), "dropped_samples": len(bare),
                "dropped_negatives": len(negatives) - len(keep_neg), "persons_removed": int(emptied)}

    def _ranked(self, emb: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Per probe, the persons among its ``k`` nearest samples with their best score, best first."""
        assert self.index is not None
        try:
            labels, dists = self.index.knn_query(emb, k=k)
        except RuntimeError:  # hnswlib could not find k live entries (k near the size, deletions): exhaustively
            ids = np.fromiter(self._labels_to_person, dtype=np.int64)
            sims = emb @ np.asarray(self.index.get_items(ids.tolist()), dtype=np.float32).T
            order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
            labels, dists = ids[order], 1.0 - np.take_along_axis(sims, order, axis=1)
        out = []
        for lab_row, dist_row in zip(labels, dists):
            best: dict[str, float] = {}
            for lab, d in zip(lab_row, dist_row):
                person = self._labels_to_person.get(int(lab))
                if person is not None:
                    best[person] = max(best.get(person, -1.0), 1.0 - float(d))
            out.append(sorted(best.items(), key=lambda item: -item[1]))
        return out

    def _first_allowed(self, q: np.ndarray, ranking: list[tuple[str, float]]) -> tuple[str, float] | None:
        """The best-ranked (person, score) that no negative sample vetoes for ``q``; None when all are vetoed."""
        return next(((person, score) for person, score in ranking if not self._vetoed(person, q)), None)

    def _vetoed(self, person: str, q: np.ndarray) -> bool:
        """Nearest neighbour with negatives: ``q`` is not ``person`` when it is at least as similar (cosine, i.e.
        inner product of unit vectors) to one of their negative samples as to their most similar sample.

        The rejected face itself and its near-duplicates stop matching, while a good photo of the real person,
        closer to what they were enrolled with, still does. Both sides are computed exactly here, in float64,
        from the stored vectors (not from the approximate index), so the comparison is the same for every reader.
        """
        negatives = self._negatives.get(person)
        if negatives is None or not len(negatives):
            return False
        positives = self._positives.get(person)
        q64 = q.astype(np.float64)
        best_negative = float(np.max(negatives.astype(np.float64) @ q64))
        best_positive = float(np.max(positives.astype(np.float64) @ q64)) if positives is not None and len(positives) \
            else -np.inf
        return best_negative >= best_positive

    def sample_vectors(self, name: str) -> np.ndarray:
        """The embeddings (``n x dim``) of ``name``'s samples, by sample id. Unknown name -> GalleryError."""
        name = normalize_name(name)
        with _sqlite_errors(self.path):
            pid = self._person_id(name)
            rows = self.db.execute("SELECT id, ?, embedding FROM samples WHERE person_id = ? ORDER BY id",
                                   (name, pid)).fetchall()
        _check_blobs(rows, self.path, self.dim, "sample")
        return np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(-1, self.dim).copy()

    def negatives(self, name: str) -> int:
        """How many negative samples ``name`` has (0 in a gallery from before negatives). Unknown -> GalleryError."""
        name = normalize_name(name)
        with _sqlite_errors(self.path):
            pid = self._person_id(name)
            if not _has_table(self.db, "negatives"):
                return 0
            return int(self.db.execute("SELECT COUNT(*) FROM negatives WHERE person_id = ?", (pid,)).fetchone()[0])

    def thumbnail(self, name: str) -> bytes | None:
        """The JPEG face chip of ``name``, None when they have none. Unknown name -> GalleryError."""
        name = normalize_name(name)
        with _sqlite_errors(self.path):
            pid = self._person_id(name)
            if not _has_table(self.db, "thumbnails"):
                return None
            row = self.db.execute("SELECT jpeg FROM thumbnails WHERE person_id = ?", (pid,)).fetchone()
        return bytes(row[0]) if row is not None else None

    def person_info(self) -> list[dict[str, Any]]:
        """One dict per person, sorted by name: ``name``, ``samples``, ``negatives``, ``has_thumbnail``."""
        with _sqlite_errors(self.path):
            negatives = ("(SELECT COUNT(*) FROM negatives n WHERE n.person_id = p.id)"
                         if _has_table(self.db, "negatives") else "0")
            thumbnail = ("EXISTS (SELECT 1 FROM thumbnails t WHERE t.person_id = p.id)"
                         if _has_table(self.db, "thumbnails") else "0")
            rows = self.db.execute(
                f"SELECT p.name, (SELECT COUNT(*) FROM samples s WHERE s.person_id = p.id), {negatives}, {thumbnail} "
                "FROM persons p ORDER BY p.name"
            ).fetchall()
        return [{"name": r[0], "samples": r[1], "negatives": r[2], "has_thumbnail": bool(r[3])} for r in rows]

    def close(self) -> None:
        self.db.close()


def _crop_blobs(crops: list[np.ndarray | bytes | None] | None, n: int, name: str) -> list[bytes | None]:
    """Each sample's face crop as JPEG bytes (None where there is none); ``GalleryError`` on a wrong count or type."""
    if crops is None:
        return [None] * n
    if len(crops) != n:
        raise GalleryError(f"{name!r}: {len(crops)} face crops for {n} samples")
    out: list[bytes | None] = []
    for c in crops:
        if c is None or isinstance(c, (bytes, bytearray, memoryview)):
            data = None if c is None else bytes(c)
            if data is not None and not data.startswith(JPEG_MAGIC):
                raise GalleryError(f"{name!r}: a face crop must be a JPEG image or a BGR array")
            out.append(data)
            continue
        arr = np.asarray(c)
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise GalleryError(f"{name!r}: a face crop must be an HxWx3 uint8 BGR image, got {arr.shape} {arr.dtype}")
        ok, buf = cv2.imencode(".jpg", arr, [cv2.IMWRITE_JPEG_QUALITY, CROP_JPEG_QUALITY])
        if not ok:
            raise GalleryError(f"{name!r}: a face crop could not be encoded")
        out.append(buf.tobytes())
    return out


def decode_crop(blob: bytes) -> np.ndarray:
    """A kept face crop back as a BGR array."""
    img = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise GalleryError("a kept face crop is not a readable JPEG")
    return img


def _read_rows(db: sqlite3.Connection, db_path: Path, dim: int) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Sample ids, their embeddings (``N x dim``) and id -> person name; a malformed embedding is an error."""
    with _sqlite_errors(db_path):
        rows = db.execute(
            "SELECT s.id, p.name, s.embedding FROM samples s JOIN persons p ON p.id = s.person_id ORDER BY s.id"
        ).fetchall()
    _check_blobs(rows, db_path, dim, "sample")
    labels = np.array([r[0] for r in rows], dtype=np.int64)
    vecs = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(-1, dim)
    return labels, vecs, {int(r[0]): r[1] for r in rows}


def _read_negatives(db: sqlite3.Connection, db_path: Path, dim: int) -> dict[str, np.ndarray]:
    """Each person's negative samples (``n x dim``) by name; {} for a gallery from before negatives existed."""
    with _sqlite_errors(db_path):
        if not _has_table(db, "negatives"):
            return {}
        rows = db.execute(
            "SELECT n.id, p.name, n.embedding FROM negatives n JOIN persons p ON p.id = n.person_id ORDER BY n.id"
        ).fetchall()
    _check_blobs(rows, db_path, dim, "negative sample")
    by_name: dict[str, list[bytes]] = {}
    for _nid, name, blob in rows:
        by_name.setdefault(name, []).append(blob)
    return {n: np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(-1, dim) for n, blobs in by_name.items()}


def _check_blobs(rows: list[tuple[int, str, Any]], db_path: Path, dim: int, what: str) -> None:
    """Every (id, name, embedding) row must hold ``dim`` float32 values; else ``GalleryError`` naming the row."""
    for rid, _name, blob in rows:
        if not isinstance(blob, bytes) or len(blob) != 4 * dim:
            size = len(blob) if isinstance(blob, (bytes, str)) else 0
            raise GalleryError(f"{db_path}: damaged gallery database ({what} {rid} holds a {size}-byte embedding, "
                               f"expected {4 * dim})")


def _load_index(path: Path, dim: int, n_rows: int) -> hnswlib.Index:
    index = hnswlib.Index(space="ip", dim=dim)
    index.load_index(str(path), max_elements=max(64, 2 * n_rows))
    index.set_ef(HNSW_EF_SEARCH)
    return index


# --------------------------------------------------------------------- check and repair
@dataclass
class GalleryHealth:
    """What ``facewatch gallery check`` reports; ``problems`` is empty for a healthy gallery."""

    path: str
    database: str = "missing"  # "ok", or what is wrong with gallery.sqlite
    integrity: str | None = None  # SQLite's PRAGMA integrity_check ("ok" or its findings), when it could run
    persons: int | None = None
    samples: int | None = None
    negatives: int | None = None  # operator feedback; 0 in a gallery from before it (not a problem)
    thumbnails: int | None = None
    generation: int | None = None
    dim: int | None = None
    index: str = "missing"  # consistent | inconsistent | damaged | stale | missing
    index_file: str | None = None
    leftover_index_files: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    @property
    def database_ok(self) -> bool:
        """The SQLite file itself is sound (whatever the index says): the precondition for ``repair``."""
        return self.database == "ok" and self.integrity == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "healthy": self.healthy}


def check(directory: str | Path) -> GalleryHealth:
    """Diagnose the gallery in ``directory`` without changing it; works where ``Gallery`` refuses to open.

    Raises ``GalleryError`` only when there is no gallery at all (no directory, or no ``gallery.sqlite`` in it).
    """
    d = Path(directory)
    db_path = d / DB_FILE
    if not d.is_dir() or not (db_path.exists() or db_path.is_symlink()):
        if d.exists() and not d.is_dir():
            raise GalleryError(f"{d}: not a directory")
        raise GalleryError(f"no gallery at {d}")
    h = GalleryHealth(path=str(d))
    try:
        db = _connect(db_path)
    except GalleryError as exc:
        h.database = str(exc)
        h.index = "unknown"
        h.problems.append(str(exc))
        return h
    try:
        h.database = "ok"
        try:
            findings = [r[0] for r in db.execute("PRAGMA integrity_check")]
            h.integrity = "ok" if findings == ["ok"] else "; ".join(findings[:5])
        except sqlite3.DatabaseError as exc:
            h.integrity = str(exc)
        if h.integrity != "ok":
            h.problems.append(f"{db_path}: SQLite integrity check failed: {h.integrity}")
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        h.dim, h.generation = int(meta["dim"]), int(meta["generation"])
        h.persons = db.execute("SELECT COUNT(*) FROM persons").fetchone()[0]
        h.samples = db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        h.negatives = sum(len(v) for v in _read_negatives(db, db_path, h.dim).values())
        h.thumbnails = (db.execute("SELECT COUNT(*) FROM thumbnails").fetchone()[0]
                        if _has_table(db, "thumbnails") else 0)
        labels, vecs, _ = _read_rows(db, db_path, h.dim)
        _check_index(h, d, labels, vecs)
    except GalleryError as exc:  # rows that cannot be read: the database, not the index, is at fault
        h.database = str(exc)
        h.problems.append(str(exc))
    except sqlite3.DatabaseError as exc:
        h.database = _sqlite_problem(db_path, exc)
        h.problems.append(h.database)
    finally:
        db.close()
    return h


def _check_index(h: GalleryHealth, d: Path, labels: np.ndarray, vecs: np.ndarray) -> None:
    """Fill in the index verdict: its file for the current generation must hold exactly the rows' vectors."""
    assert h.generation is not None and h.dim is not None
    files = _index_files(d)
    current = files.pop(h.generation, None)
    h.leftover_index_files = sorted(p.name for p in files.values())
    newer = sorted(p.name for g, p in files.items() if g > h.generation)
    if newer:
        h.problems.append(f"{d}: index file(s) {', '.join(newer)} newer than the database (generation "
                          f"{h.generation}): was {DB_FILE} replaced by an older copy?")
    if current is None:
        h.index = "stale" if files else "missing"
        what = (f"only index file(s) of other generations ({', '.join(h.leftover_index_files)})" if files
                else "no index file")
        h.problems.append(f"{d}: index.{h.generation}.hnsw is missing ({what}); `facewatch gallery repair` rebuilds it")
        return
    h.index_file = current.name
    try:
        index = _load_index(current, h.dim, len(labels))
    except Exception as exc:  # hnswlib raises RuntimeError and friends for a damaged file
        h.index = "damaged"
        h.problems.append(f"{current}: unreadable index ({exc}); `facewatch gallery repair` rebuilds it")
        return
    live = _live_ids(index)
    rows = {int(x) for x in labels}
    same = live == rows
    if same and len(labels):
        stored = index.get_items(labels.tolist())
        same = bool(np.allclose(stored, vecs, atol=1e-5))
    h.index = "consistent" if same else "inconsistent"
    if not same:
        h.problems.append(f"{current}: index does not match the database ({len(live)} entries, {len(rows)} samples); "
                          "`facewatch gallery repair` rebuilds it")


def _live_ids(index: hnswlib.Index) -> set[int]:
    """Labels in ``index`` that are not marked deleted (hnswlib only tells per label, by refusing them)."""
    ids = [int(x) for x in index.get_ids_list()]
    try:
        index.get_items(ids)
        return set(ids)
    except RuntimeError:
        live = set()
        for i in ids:
            try:
                index.get_items([i])
                live.add(i)
            except RuntimeError:
                pass
        return live


@dataclass
class RepairResult:
    """What ``repair`` did, and the health afterwards."""

    path: str
    before: str  # the index verdict before
    rebuilt: str | None  # the index file written, None when there was nothing to repair
    samples: int
    after: GalleryHealth

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "index_before": self.before, "rebuilt": self.rebuilt, "samples": self.samples,
                "healthy": self.after.healthy, "problems": self.after.problems}


def repair(directory: str | Path) -> RepairResult:
    """Rebuild the index from the rows when it is not consistent. Refuses (``GalleryError``, nothing touched) a
    gallery whose SQLite database itself is damaged: that needs a backup, not a rebuild from bad rows."""
    before = check(directory)
    if not before.database_ok:
        why = before.problems[0] if before.problems else before.integrity
        raise GalleryError(f"cannot repair {before.path}, its database itself is damaged ({why}); "
                           f"restore {DB_FILE} from a backup")
    if before.index == "consistent":
        return RepairResult(before.path, before.index, None, before.samples or 0, before)
    assert before.dim is not None
    with Gallery(directory, dim=before.dim, create=False) as g:
        written = g.rebuild_index()
    after = check(directory)
    return RepairResult(before.path, before.index, written.name, after.samples or 0, after)
