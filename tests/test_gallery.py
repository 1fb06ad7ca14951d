"""Gallery: enroll/search/remove, persistence, permissions, index rebuilds, crash safety under SIGKILL."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from stream.store.gallery import Gallery, GalleryError

REPO = Path(__file__).resolve().parent.parent


def unit(rng, n, dim=128):
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def near(v, rng, noise=0.02):
    w = v + rng.normal(scale=noise, size=v.shape).astype(np.float32)
    return w / np.linalg.norm(w, axis=-1, keepdims=True)


def test_enroll_search_persist(tmp_path):
    rng = np.random.default_rng(0)
    people = unit(rng, 5)
    g = Gallery(tmp_path / "g")
    for i, p in enumerate(people):
        g.enroll(f"p{i}", np.stack([near(p, rng), near(p, rng)]))
    g.enroll("p0", near(people[0], rng)[None])  # several embeddings per person
    assert g.persons() == [("p0", 3), ("p1", 2), ("p2", 2), ("p3", 2), ("p4", 2)]
    g.close()
    g2 = Gallery(tmp_path / "g", readonly=True)
    cands = g2.search(np.stack([near(p, rng) for p in people]))
    assert [c.identity for c in cands] == [f"p{i}" for i in range(5)]
    assert all(c.score > 0.9 for c in cands)
    stranger = g2.search(unit(rng, 1))[0]
    assert stranger.score < 0.5


def test_remove_and_rebuild(tmp_path):
    rng = np.random.default_rng(1)
    people = unit(rng, 4)
    g = Gallery(tmp_path)
    for i, p in enumerate(people):
        g.enroll(f"p{i}", near(p, rng)[None])
    assert g.remove("p1") == 1
    assert [n for n, _ in g.persons()] == ["p0", "p2", "p3"]
    assert g.search(people[1][None])[0].identity != "p1"
    with pytest.raises(GalleryError, match="no person named 'ghost'"):
        g.remove("ghost")
    g.remove("p2")  # 2 of 4 deleted > 25 % -> rebuilt without tombstones
    assert g.index.get_current_count() == 2
    assert len(list(tmp_path.glob("index.*.hnsw"))) == 1
    assert Gallery(tmp_path, readonly=True).search(people[3][None])[0].identity == "p3"


def test_biometric_files_owner_only(tmp_path):
    g = Gallery(tmp_path / "g")
    g.enroll("a", unit(np.random.default_rng(2), 1))
    assert stat.S_IMODE(os.stat(tmp_path / "g").st_mode) == 0o700
    for f in (tmp_path / "g").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, f


def test_bad_enrollments_change_nothing(tmp_path):
    g = Gallery(tmp_path)
    g.enroll("a", unit(np.random.default_rng(3), 1))
    gen = g.generation
    with pytest.raises(GalleryError):
        g.enroll("b", np.zeros((0, 128), np.float32))
    with pytest.raises(GalleryError):
        g.enroll("b", np.full((1, 128), np.nan, np.float32))
    with pytest.raises(GalleryError):
        g.enroll("  ", unit(np.random.default_rng(3), 1))
    assert g.generation == gen and g.persons() == [("a", 1)]


def test_missing_or_damaged_index_is_rebuilt(tmp_path):
    rng = np.random.default_rng(4)
    v = unit(rng, 3)
    g = Gallery(tmp_path)
    for i in range(3):
        g.enroll(f"p{i}", v[i][None])
    g.close()
    idx = next(tmp_path.glob("index.*.hnsw"))
    idx.write_bytes(b"garbage")
    assert Gallery(tmp_path, readonly=True).search(v[2][None])[0].identity == "p2"
    idx.unlink()
    assert Gallery(tmp_path).search(v[1][None])[0].identity == "p1"


WRITER = """
import sys, numpy as np
from stream.store.gallery import Gallery
g = Gallery(sys.argv[1])
rng = np.random.default_rng(int(sys.argv[2]))
i = 0
while True:
    v = rng.normal(size=(8, 128)).astype(np.float32)
    g.enroll(f"w{i % 50}", v / np.linalg.norm(v, axis=1, keepdims=True))
    victim = f"w{(i * 3) % 50}"
    if i % 7 == 6 and victim in dict(g.persons()):
        g.remove(victim)
    i += 1
    print(i, flush=True)
"""


def test_sigkill_during_writes_leaves_a_loadable_gallery(tmp_path):
    """Kill a writer at random moments, many times; every time the gallery loads and is consistent."""
    gdir = tmp_path / "g"
    rng = np.random.default_rng(5)
    for round_ in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(gdir), str(round_)], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        proc.stdout.readline()  # at least one enrollment went through
        time.sleep(float(rng.uniform(0.0, 0.4)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        g = Gallery(gdir, readonly=True)
        persons = dict(g.persons())
        assert persons, "gallery lost its data"
        assert all(c % 8 == 0 and c > 0 for c in persons.values()), persons  # no half enrollment
        assert len(g) == sum(persons.values())
        probe = np.frombuffer(g.db.execute("SELECT embedding FROM samples LIMIT 1").fetchone()[0], np.float32)
        assert g.search(probe[None])[0].score > 0.999
        g.close()
