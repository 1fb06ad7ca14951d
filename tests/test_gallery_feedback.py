"""Gallery feedback from operators: negative samples and the veto rule in ``search``, rename, thumbnails,
``person_info``, the migration of galleries made before these, and ``facewatch gallery rename``.

The embeddings are built from an orthonormal basis, so every cosine similarity in a test is known exactly.
"""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import cv2
import hnswlib
import numpy as np
import pytest

from stream.store.gallery import DB_FILE, Candidate, Gallery, GalleryError, check, normalize_name

REPO = Path(__file__).resolve().parent.parent
DIM = 128


def basis(n: int, seed: int = 0) -> np.ndarray:
    """``n`` orthonormal 128-d vectors (rows)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(DIM, n)))
    return q.T.astype(np.float32)


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


E = basis(8)
A_SAMPLES = np.stack([E[0], unit(E[0] + 0.1 * E[5])])  # person "a": e0 is the best sample for the probes below
B_SAMPLES = E[1][None]  # person "b"
REJECTED = unit(0.8 * E[0] + 0.6 * E[1])  # matched "a" with 0.8, "b" with 0.6; the operator says: not "a"
GOOD_A = unit(0.95 * E[0] + np.sqrt(1 - 0.95 ** 2) * E[2])  # a good photo of "a": 0.95 to e0, 0.76 to REJECTED


def jpeg(seed: int = 0) -> bytes:
    """A real JPEG face-chip-sized image."""
    img = np.random.default_rng(seed).integers(0, 255, size=(112, 112, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def files(d: Path) -> dict[str, bytes]:
    """Every file of the gallery, byte for byte."""
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def two_persons(d: Path) -> Gallery:
    g = Gallery(d)
    g.enroll("a", A_SAMPLES, ["a1.jpg", "a2.jpg"], thumbnail=jpeg(1))
    g.enroll("b", B_SAMPLES, ["b1.jpg"])
    return g


# --------------------------------------------------------------------- negatives
def test_negative_vetoes_the_rejected_face_and_its_near_duplicates(tmp_path):
    g = two_persons(tmp_path / "g")
    before = g.search(REJECTED[None])[0]
    assert before.identity == "a" and before.score == pytest.approx(0.8, abs=1e-5)
    gen = g.generation
    assert g.add_negative("a", REJECTED, source="event 17") == 1
    assert g.generation == gen + 1 and g.negatives("a") == 1 and g.negatives("b") == 0

    rejected = g.search(REJECTED[None])[0]
    assert rejected.identity == "b" and rejected.score == pytest.approx(0.6, abs=1e-5)  # the next best identity
    assert rejected.accepted(0.5) == "b" and rejected.accepted(0.7) is None
    rng = np.random.default_rng(3)
    twins = np.stack([unit(REJECTED + rng.normal(scale=0.01, size=DIM).astype(np.float32)) for _ in range(5)])
    assert [c.identity for c in g.search(twins)] == ["b"] * 5  # near-duplicates of the rejected face
    good = g.search(GOOD_A[None])[0]  # closer to a's enrolled samples than to the rejected face: still "a"
    assert good.identity == "a" and good.score == pytest.approx(0.95, abs=1e-5)
    assert [c.identity for c in g.search(A_SAMPLES)] == ["a", "a"]

    # The rule at its edge, with margins: nearer the negative -> vetoed; nearer a's best sample -> "a".
    assert g.search(unit(E[0] + 1.05 * REJECTED)[None])[0].identity == "b"
    assert g.search(unit(1.05 * E[0] + REJECTED)[None])[0].identity == "a"
    assert check(tmp_path / "g").healthy
    g.close()


def test_nobody_left_means_no_candidate(tmp_path):
    with Gallery(tmp_path / "g") as g:
        g.enroll("a", A_SAMPLES)
        g.add_negative("a", REJECTED)
        c = g.search(REJECTED[None])[0]
        assert c == Candidate(None, -1.0) and c.accepted(-1.0) is None
        assert g.search(GOOD_A[None])[0].identity == "a"


def test_a_veto_looks_past_the_k_nearest(tmp_path):
    """With only vetoed persons among the k nearest samples, the search goes further rather than miss "b"."""
    with Gallery(tmp_path / "g") as g:
        g.enroll("a", np.stack([E[0], unit(E[0] + 0.05 * E[5]), unit(E[0] + 0.05 * E[6])]))
        g.enroll("b", B_SAMPLES)
        g.enroll("c", E[3][None])
        assert [c.identity for c in g.search(REJECTED[None], k=1)] == ["a"]
        g.add_negative("a", REJECTED)
        c = g.search(REJECTED[None], k=1)[0]  # the nearest sample is a's; the 4 nearest reach "b"
        assert c.identity == "b" and c.score == pytest.approx(0.6, abs=1e-5)


def test_negatives_survive_reopen_and_reach_a_readonly_reader(tmp_path):
    d = tmp_path / "g"
    two_persons(d).close()
    reader = Gallery(d, readonly=True)  # the match stage: opened once, reloads when the generation moves
    assert reader.search(REJECTED[None])[0].identity == "a"
    with Gallery(d, create=False) as w:
        w.add_negative("a", REJECTED)
    assert reader.generation != reader.loaded_generation
    reader.reload()
    assert reader.search(REJECTED[None])[0].identity == "b"
    assert reader.search(GOOD_A[None])[0].identity == "a"
    with pytest.raises(GalleryError, match="read-only"):
        reader.add_negative("a", REJECTED)
    reader.close()
    with Gallery(d, readonly=True) as again:
        assert again.negatives("a") == 1 and again.search(REJECTED[None])[0].identity == "b"


def test_bad_negatives_change_nothing(tmp_path):
    d = tmp_path / "g"
    g = two_persons(d)
    before, gen = files(d), g.generation
    with pytest.raises(GalleryError, match="no person named 'ghost'"):
        g.add_negative("ghost", REJECTED)
    with pytest.raises(GalleryError, match="NaN"):
        g.add_negative("a", np.full(DIM, np.nan, np.float32))
    with pytest.raises(GalleryError, match="one embedding, got 2"):
        g.add_negative("a", np.stack([REJECTED, REJECTED]))
    with pytest.raises(GalleryError, match="128-d"):
        g.add_negative("a", REJECTED[:100])
    with pytest.raises(GalleryError, match="no person named 'ghost'"):
        g.negatives("ghost")
    assert g.generation == gen and files(d) == before and g.negatives("a") == 0
    g.close()


def test_remove_takes_negatives_and_thumbnail_along(tmp_path):
    with two_persons(tmp_path / "g") as g:
        g.add_negative("a", REJECTED)
        assert g.remove("a") == 2
        assert g.db.execute("SELECT COUNT(*) FROM negatives").fetchone()[0] == 0
        assert g.db.execute("SELECT COUNT(*) FROM thumbnails").fetchone()[0] == 0
        g.enroll("a", A_SAMPLES)  # the same name again is a new person: nothing of the old one attaches
        assert g.negatives("a") == 0 and g.thumbnail("a") is None
        assert g.search(REJECTED[None])[0].identity == "a"
    assert check(tmp_path / "g").healthy


# --------------------------------------------------------------------- rename
def test_rename_moves_everything(tmp_path):
    d = tmp_path / "g"
    g = two_persons(d)
    g.add_negative("a", REJECTED)
    reader = Gallery(d, readonly=True)
    count = g.index.get_current_count()
    gen = g.generation
    assert g.rename(" a ", "  Anne   Smith ") == 2
    assert g.generation == gen + 1
    assert g.persons() == [("Anne Smith", 2), ("b", 1)]
    assert g.negatives("Anne Smith") == 1 and g.thumbnail("Anne Smith") == jpeg(1)
    assert g.index.get_current_count() == count  # the index labels are row ids: nothing to rebuild
    for name in ("a", " a "):
        with pytest.raises(GalleryError, match="no person named 'a'"):
            g.negatives(name)
    assert g.search(GOOD_A[None])[0].identity == "Anne Smith"
    assert g.search(REJECTED[None])[0].identity == "b"  # the veto moved with the person
    reader.reload()
    assert [c.identity for c in reader.search(np.stack([GOOD_A, REJECTED]))] == ["Anne Smith", "b"]
    reader.close()
    g.close()
    assert check(d).healthy


@pytest.mark.parametrize("old,new,why", [
    ("ghost", "c", "no person named 'ghost'"),
    ("a", "b", "'b' is already enrolled"),
    ("a", " b ", "'b' is already enrolled"),
    ("a", "a", "already their name"),
    ("a", "x/y", None),
    ("a", "   ", None),
    ("a", "x\ty", None),
    ("a", "n" * 200, None),
])
def test_rename_refusals_change_nothing(tmp_path, old, new, why):
    d = tmp_path / "g"
    g = two_persons(d)
    g.add_negative("a", REJECTED)
    before, gen = files(d), g.generation
    if why is None:  # an invalid new name: the same error as enroll gives
        with pytest.raises(GalleryError) as expected:
            g.enroll(new, E[4][None])
        why = str(expected.value)
        with pytest.raises(GalleryError) as expected_norm:
            normalize_name(new)
        assert str(expected_norm.value) == why
    with pytest.raises(GalleryError, match=None) as got:
        g.rename(old, new)
    assert why in str(got.value) and "\n" not in str(got.value)
    assert g.generation == gen and files(d) == before
    assert g.persons() == [("a", 2), ("b", 1)] and g.negatives("a") == 1
    g.close()


def test_rename_refused_read_only(tmp_path):
    two_persons(tmp_path / "g").close()
    with Gallery(tmp_path / "g", readonly=True) as r, pytest.raises(GalleryError, match="read-only"):
        r.rename("a", "c")


# --------------------------------------------------------------------- thumbnails and person_info
def test_thumbnails(tmp_path):
    d = tmp_path / "g"
    g = two_persons(d)
    assert g.thumbnail("a") == jpeg(1) and isinstance(g.thumbnail("a"), bytes)
    assert g.thumbnail("b") is None
    g.enroll("a", E[4][None], thumbnail=jpeg(2))  # a later enrollment keeps the face operators know
    assert g.thumbnail("a") == jpeg(1)
    g.enroll("b", E[6][None], thumbnail=jpeg(3))  # b had none: this one becomes it
    assert g.thumbnail("b") == jpeg(3)
    gen = g.generation
    g.set_thumbnail("a", jpeg(4))
    assert g.thumbnail("a") == jpeg(4) and g.generation == gen + 1

    before, gen = files(d), g.generation
    for call, why in [(lambda: g.set_thumbnail("ghost", jpeg()), "no person named 'ghost'"),
                      (lambda: g.set_thumbnail("a", b"GIF89a..."), "not a JPEG image"),
                      (lambda: g.set_thumbnail("a", "not bytes"), "must be JPEG bytes"),
                      (lambda: g.set_thumbnail("a", b"\xff\xd8\xff" + bytes(2 << 20)), "at most"),
                      (lambda: g.enroll("c", E[7][None], thumbnail=b"png"), "not a JPEG image"),
                      (lambda: g.thumbnail("ghost"), "no person named 'ghost'")]:
        with pytest.raises(GalleryError, match=why):
            call()
    assert g.generation == gen and files(d) == before and [n for n, _ in g.persons()] == ["a", "b"]
    assert not [p for p in d.iterdir() if not (p.name == DB_FILE or p.name.startswith("index."))]
    g.close()
    with Gallery(d, readonly=True) as r:
        assert r.thumbnail("a") == jpeg(4)


def test_person_info(tmp_path):
    with Gallery(tmp_path / "g") as g:
        assert g.person_info() == []
        g.enroll("zoe", E[3][None])
        g.enroll("a", A_SAMPLES, thumbnail=jpeg())
        g.enroll("b", B_SAMPLES)
        g.add_negative("a", REJECTED)
        g.add_negative("a", unit(REJECTED + 0.1 * E[7]))
        g.add_negative("zoe", E[1])
        assert g.person_info() == [
            {"name": "a", "samples": 2, "negatives": 2, "has_thumbnail": True},
            {"name": "b", "samples": 1, "negatives": 0, "has_thumbnail": False},
            {"name": "zoe", "samples": 1, "negatives": 1, "has_thumbnail": False},
        ]
        assert [(p["name"], p["samples"]) for p in g.person_info()] == g.persons()
    h = check(tmp_path / "g")
    assert h.healthy and (h.persons, h.samples, h.negatives, h.thumbnails) == (3, 4, 3, 1)


# --------------------------------------------------------------------- galleries made before feedback
OLD_SCHEMA = """
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
    created REAL NOT NULL
);
CREATE INDEX samples_person ON samples(person_id);
"""


def old_gallery(d: Path) -> np.ndarray:
    """A gallery exactly as the code before operator feedback wrote it: its schema, rows and index file; the
    embeddings, in row order."""
    d.mkdir(mode=0o700)
    vecs = np.concatenate([A_SAMPLES, B_SAMPLES, E[3][None]])
    db = sqlite3.connect(d / DB_FILE)
    db.executescript(OLD_SCHEMA)
    db.executemany("INSERT INTO meta VALUES (?, ?)", [("dim", str(DIM)), ("generation", "3")])
    db.executemany("INSERT INTO persons (name, created) VALUES (?, 0)", [("a",), ("b",), ("c",)])
    db.executemany("INSERT INTO samples (person_id, embedding, source, created) VALUES (?, ?, ?, 0)",
                   [(pid, v.tobytes(), f"{i}.jpg") for i, (pid, v) in enumerate(zip([1, 1, 2, 3], vecs))])
    db.commit()
    db.close()
    index = hnswlib.Index(space="ip", dim=DIM)
    index.init_index(max_elements=64, ef_construction=200, M=16)
    index.add_items(vecs, np.arange(1, len(vecs) + 1), num_threads=1)
    index.save_index(str(d / "index.3.hnsw"))
    return vecs


def test_old_gallery_is_read_as_is_and_migrated_by_a_writer(tmp_path):
    d = tmp_path / "old"
    vecs = old_gallery(d)
    h = check(d)
    assert h.healthy and (h.samples, h.negatives, h.thumbnails) == (4, 0, 0)
    before = files(d)
    with Gallery(d, readonly=True) as r:  # a reader writes nothing: no negatives, no thumbnails
        assert r.negatives("a") == 0 and r.thumbnail("a") is None
        assert [p["negatives"] for p in r.person_info()] == [0, 0, 0]
        assert r.search(REJECTED[None])[0].identity == "a"
        with pytest.raises(GalleryError, match="read-only"):
            r.add_negative("a", REJECTED)
    assert files(d) == before

    with Gallery(d, create=False) as g:  # the first writer adds the tables, keeping every row
        assert g.generation == 3  # a migration is not a change of content
        tables = {r[0] for r in g.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"negatives", "thumbnails"} <= tables
        rows = g.db.execute("SELECT id, person_id, embedding, source FROM samples ORDER BY id").fetchall()
        assert [(r[0], r[1], r[3]) for r in rows] == [(1, 1, "0.jpg"), (2, 1, "1.jpg"), (3, 2, "2.jpg"),
                                                      (4, 3, "3.jpg")]
        assert np.array_equal(np.frombuffer(b"".join(r[2] for r in rows), np.float32).reshape(-1, DIM), vecs)
        assert g.persons() == [("a", 2), ("b", 1), ("c", 1)]
        assert check(d).healthy
        assert g.add_negative("a", REJECTED) == 1
        g.set_thumbnail("c", jpeg())
        assert g.rename("c", "carol") == 1
    with Gallery(d, create=False) as g:  # a second open finds nothing to migrate
        assert g.person_info() == [
            {"name": "a", "samples": 2, "negatives": 1, "has_thumbnail": False},
            {"name": "b", "samples": 1, "negatives": 0, "has_thumbnail": False},
            {"name": "carol", "samples": 1, "negatives": 0, "has_thumbnail": True},
        ]
        assert g.search(REJECTED[None])[0].identity == "b"
    h = check(d)
    assert h.healthy and (h.samples, h.negatives, h.thumbnails) == (4, 1, 1)


def test_feedback_table_of_someone_else_is_refused(tmp_path):
    d = tmp_path / "old"
    old_gallery(d)
    db = sqlite3.connect(d / DB_FILE)
    db.execute("CREATE TABLE negatives (id INTEGER PRIMARY KEY, note TEXT)")
    db.commit()
    db.close()
    before = files(d)
    with pytest.raises(GalleryError, match=r"table 'negatives' lacks embedding, person_id"):
        Gallery(d)
    assert not check(d).healthy
    assert files(d) == before


def test_check_after_every_operation(tmp_path):
    d = tmp_path / "g"
    with two_persons(d) as g:
        for step in (lambda: g.add_negative("a", REJECTED), lambda: g.set_thumbnail("b", jpeg()),
                     lambda: g.rename("b", "bob"), lambda: g.enroll("bob", E[4][None]), lambda: g.remove("a")):
            step()
            h = check(d)
            assert h.healthy, h.problems
            assert h.index == "consistent" and h.generation == g.generation
    assert (h.persons, h.samples, h.negatives, h.thumbnails) == (1, 2, 0, 1)


# --------------------------------------------------------------------- the CLI
def facewatch(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "stream.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc


def test_cli_rename(tmp_path):
    d = tmp_path / "g"
    with two_persons(d) as g:
        g.add_negative("a", REJECTED)
    res = facewatch("gallery", "rename", "--gallery", str(d), " a ", "Anne  Smith")
    assert res.returncode == 0 and res.stdout.strip() == "renamed a to Anne Smith (2 samples)" and not res.stderr
    res = facewatch("--json", "gallery", "rename", "--gallery", str(d), "Anne Smith", "Anne")
    assert res.returncode == 0 and json.loads(res.stdout) == {"old": "Anne Smith", "new": "Anne", "samples": 2}
    with Gallery(d, readonly=True) as r:
        assert r.person_info()[0] == {"name": "Anne", "samples": 2, "negatives": 1, "has_thumbnail": True}
    assert facewatch("gallery", "check", "--gallery", str(d)).returncode == 0

    before = files(d)
    cases = [(["Anne", "b"], "'b' is already enrolled"), (["ghost", "c"], "no person named 'ghost'"),
             (["Anne", "x/y"], "path separator"), (["Anne", " "], "must not be empty"),
             (["Anne", "Anne"], "already their name")]
    for (old, new), why in cases:
        res = facewatch("gallery", "rename", "--gallery", str(d), old, new)
        assert res.returncode == 2 and not res.stdout, (old, new, res)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("facewatch: error: ") and why in lines[0], lines
        res = facewatch("--json", "gallery", "rename", "--gallery", str(d), old, new)
        out = json.loads(res.stdout)
        assert res.returncode == 2 and out["exit_status"] == 2 and out["error"]["code"] == "gallery"
        assert why in out["error"]["message"] and not res.stderr
    assert files(d) == before

    res = facewatch("gallery", "rename", "--gallery", str(tmp_path / "nope"), "a", "b")
    assert res.returncode == 2 and res.stderr.strip() == f"facewatch: error: no gallery at {tmp_path / 'nope'}"
    assert not (tmp_path / "nope").exists()
    res = facewatch("--json", "gallery", "rename", "--gallery", str(d), "Anne")
    assert res.returncode == 2 and json.loads(res.stdout)["error"]["code"] == "usage"
    assert files(d) == before
