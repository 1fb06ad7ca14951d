"""Gallery: enroll/search/remove, persistence, permissions, index rebuilds, crash safety under SIGKILL."""
from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from click.testing import CliRunner

from stream.cli import main
from stream.store.gallery import (DB_FILE, Gallery, GalleryError, GalleryHealth, check, normalize_name, repair,
                                  writer_preflight)

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


# Prints "pending <total samples if the next change commits>" before each change and "done <total>" after it,
# so the test knows the only two states a kill may leave.
WRITER = """
import sys, numpy as np
from stream.store.gallery import Gallery
g = Gallery(sys.argv[1])
rng = np.random.default_rng(int(sys.argv[2]))
total = lambda: g.db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
i = 0
while True:
    v = rng.normal(size=(8, 128)).astype(np.float32)
    print("pending", total() + 8, flush=True)
    g.enroll(f"w{i % 50}", v / np.linalg.norm(v, axis=1, keepdims=True))
    print("done", total(), flush=True)
    victim = f"w{(i * 3) % 50}"
    persons = dict(g.persons())
    if i % 7 == 6 and victim in persons:
        print("pending", total() - persons[victim], flush=True)
        g.remove(victim)
        print("done", total(), flush=True)
    i += 1
"""


def test_sigkill_during_writes_leaves_a_loadable_gallery(tmp_path):
    """Kill a writer at random moments, many times; every time the gallery loads and is consistent."""
    gdir = tmp_path / "g"
    rng = np.random.default_rng(5)
    for round_ in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(gdir), str(round_)], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        seen = []
        while not (seen and seen[-1].startswith("done")):  # at least one change went through
            seen.append(proc.stdout.readline())
        time.sleep(float(rng.uniform(0.0, 0.4)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        events = [ln.split() for ln in seen + proc.stdout.read().splitlines() if ln.strip()]
        g = Gallery(gdir, readonly=True)
        persons = dict(g.persons())
        assert persons, "gallery lost its data"
        # the last committed state, or the change under way when the kill came: nothing in between
        allowed = {int([v for k, v in events if k == "done"][-1])}
        if events[-1][0] == "pending":
            allowed.add(int(events[-1][1]))
        assert sum(persons.values()) in allowed, (persons, events[-3:])
        assert all(c % 8 == 0 and c > 0 for c in persons.values()), persons  # no half enrollment
        assert len(g) == sum(persons.values())
        probe = np.frombuffer(g.db.execute("SELECT embedding FROM samples LIMIT 1").fetchone()[0], np.float32)
        assert g.search(probe[None])[0].score > 0.999
        g.close()


# --------------------------------------------------------------------- never damaged by an error
def snapshot(d: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every entry under ``d`` (itself included): bytes, mtime and mode, to prove an error touched nothing."""
    out = {".": (b"", d.stat().st_mtime_ns, d.stat().st_mode)}
    for p in sorted(d.rglob("*")):
        st = p.stat()
        out[str(p.relative_to(d))] = (p.read_bytes() if p.is_file() else b"", st.st_mtime_ns, st.st_mode)
    return out


def filled(d: Path, n: int = 3) -> np.ndarray:
    """A real gallery of ``n`` persons in ``d``; their embeddings."""
    v = unit(np.random.default_rng(7), n)
    with Gallery(d) as g:
        for i in range(n):
            g.enroll(f"p{i}", v[i][None])
    return v


def zero_byte_db(d: Path) -> None:
    filled(d)
    (d / DB_FILE).write_bytes(b"")


def garbage_db(d: Path) -> None:
    filled(d)
    (d / DB_FILE).write_bytes(os.urandom(8192))


def malformed_db(d: Path) -> None:  # a valid header, damaged pages
    filled(d)
    data = bytearray((d / DB_FILE).read_bytes())
    data[100:4096 * 3] = b"\xa5" * (4096 * 3 - 100)
    (d / DB_FILE).write_bytes(bytes(data))


def foreign_db(d: Path) -> None:
    d.mkdir()
    con = sqlite3.connect(d / DB_FILE)
    con.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    con.execute("INSERT INTO invoices VALUES (1, 9.5)")
    con.commit()
    con.close()


def half_schema_db(d: Path) -> None:
    filled(d)
    con = sqlite3.connect(d / DB_FILE)
    con.execute("DROP TABLE samples")
    con.commit()
    con.close()


def no_generation_db(d: Path) -> None:
    filled(d)
    con = sqlite3.connect(d / DB_FILE)
    con.execute("UPDATE meta SET value = 'x' WHERE key = 'generation'")
    con.commit()
    con.close()


def index_without_db(d: Path) -> None:
    filled(d)
    (d / DB_FILE).unlink()


def unrelated_dir(d: Path) -> None:
    d.mkdir()
    (d / "holiday.jpg").write_bytes(b"\xff\xd8 not ours")


def db_is_a_directory(d: Path) -> None:
    (d / DB_FILE).mkdir(parents=True)


BROKEN = {
    "zero-byte database": (zero_byte_db, "empty file (0 bytes)"),
    "garbage database": (garbage_db, "not an SQLite database"),
    "malformed database": (malformed_db, "corrupt SQLite database"),
    "foreign SQLite file": (foreign_db, "not a facewatch gallery"),
    "half a schema": (half_schema_db, "table 'samples' is missing"),
    "bad metadata": (no_generation_db, "'generation' is missing or not a number"),
    "index files, no database": (index_without_db, "not a gallery, refusing to initialise"),
    "unrelated directory": (unrelated_dir, "not a gallery, refusing to initialise"),
    "database is a directory": (db_is_a_directory, "not a regular file"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_unexpected_state_is_an_error_that_touches_nothing(tmp_path, case):
    make, why = BROKEN[case]
    d = tmp_path / "g"
    make(d)
    before = snapshot(d)
    for attempt in (lambda: Gallery(d), lambda: writer_preflight(d),
                    lambda: Gallery(d).enroll("new", unit(np.random.default_rng(8), 1))):
        with pytest.raises(GalleryError, match=re.escape(why)) as err:
            attempt()
        assert str(d) in str(err.value) and "\n" not in str(err.value)
    # removal and readers refuse it too: with the same reason, or "no gallery" where there is no database
    reason = re.escape(why) if (d / DB_FILE).exists() else f"no gallery at {re.escape(str(d))}$"
    for attempt in (lambda: Gallery(d, create=False), lambda: Gallery(d, readonly=True), lambda: check(d)):
        try:
            result = attempt()
        except GalleryError as exc:
            assert re.search(reason, str(exc)), exc
        else:  # only check() answers instead of raising: with the problem
            assert isinstance(result, GalleryHealth) and not result.healthy and why in result.problems[0]
    assert snapshot(d) == before


def test_enroll_cli_on_zero_byte_database_keeps_the_index(tmp_path):
    """The tester's case: enrolling into a zero-byte gallery.sqlite deleted index.<gen>.hnsw, the last copy."""
    d = tmp_path / "g"
    zero_byte_db(d)
    photo = tmp_path / "x.jpg"
    photo.write_bytes(b"\xff\xd8")  # never read: the gallery is refused before any photo is analysed
    before = snapshot(d)
    res = CliRunner().invoke(main, ["gallery", "enroll", "--gallery", str(d), "alice", str(photo)])
    assert res.exit_code == 2
    expected = f"facewatch: error: {d / DB_FILE}: empty file (0 bytes), not a gallery database"
    assert res.stderr.strip().splitlines() == [expected]
    assert "Traceback" not in res.output
    assert snapshot(d) == before and list(d.glob("index.*.hnsw"))


def test_only_a_new_or_empty_directory_is_initialised(tmp_path):
    new = tmp_path / "a" / "b"
    Gallery(new).close()
    assert (new / DB_FILE).is_file() and stat.S_IMODE(new.stat().st_mode) == 0o700
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".index.x1.tmp").write_bytes(b"left by a killed writer")  # our own leftovers do not count
    with Gallery(empty) as g:
        assert g.persons() == [] and g.generation == 0
    assert sorted(f.name for f in empty.iterdir()) == [".index.x1.tmp", DB_FILE, "index.0.hnsw"]
    for f in (empty / DB_FILE, empty / "index.0.hnsw", empty):
        assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, f
    # removal and readers never create one
    with pytest.raises(GalleryError, match=f"no gallery at {re.escape(str(tmp_path / 'none'))}"):
        Gallery(tmp_path / "none", create=False)
    with pytest.raises(GalleryError, match="no gallery at"):
        Gallery(tmp_path / "none", readonly=True)
    assert not (tmp_path / "none").exists()
    assert not list(tmp_path.glob("**/.gallery-init.*"))  # the temporary database was linked and removed


@pytest.mark.parametrize("target", ["directory", "file"])
def test_read_only_gallery_refuses_writers_but_serves_readers(tmp_path, target):
    d = tmp_path / "g"
    v = filled(d)
    locked = d if target == "directory" else d / DB_FILE
    os.chmod(locked, 0o500 if target == "directory" else 0o400)
    try:
        before = snapshot(d)
        with pytest.raises(GalleryError, match=f"{re.escape(str(locked))}: read-only"):
            Gallery(d)
        with pytest.raises(GalleryError, match="read-only"):
            writer_preflight(d)
        with Gallery(d, readonly=True) as g:
            assert g.search(v[1][None])[0].identity == "p1"
            assert [n for n, _ in g.persons()] == ["p0", "p1", "p2"]
        assert snapshot(d) == before
    finally:
        os.chmod(locked, 0o700 if target == "directory" else 0o600)


def test_sqlite_errors_mid_operation_are_gallery_errors(tmp_path):
    d = tmp_path / "g"
    filled(d)
    g = Gallery(d)
    g.db.close()  # stands in for any SQLite failure after a successful open
    g.db = sqlite3.connect(d / DB_FILE)
    g.db.execute("PRAGMA query_only = ON")
    with pytest.raises(GalleryError, match=re.escape(str(d / DB_FILE))):
        g.enroll("p9", unit(np.random.default_rng(9), 1))
    assert [n for n, _ in Gallery(d, readonly=True).persons()] == ["p0", "p1", "p2"]


def test_killed_first_enrollment_leaves_no_half_made_database(tmp_path):
    """A new gallery appears whole or not at all: the directory stays usable after a kill at any moment."""
    rng = np.random.default_rng(10)
    for round_ in range(4):
        d = tmp_path / f"g{round_}"
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(d), str(round_)], cwd=REPO,
                                stdout=subprocess.DEVNULL)
        time.sleep(float(rng.uniform(0.2, 0.8)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with Gallery(d) as g:  # initialised now, or opened as the killed writer left it
            assert all(c % 8 == 0 for _, c in g.persons())
        assert check(d).healthy


# --------------------------------------------------------------------- check and repair
def test_check_reports_each_index_state(tmp_path):
    d = tmp_path / "g"
    v = filled(d)
    h = check(d)
    assert (h.healthy, h.index, h.persons, h.samples, h.generation, h.integrity) == (True, "consistent", 3, 3, 3, "ok")
    idx = d / "index.3.hnsw"
    good = idx.read_bytes()

    idx.write_bytes(b"garbage")
    assert check(d).index == "damaged"
    idx.rename(d / "index.2.hnsw")
    h = check(d)
    assert h.index == "stale" and h.leftover_index_files == ["index.2.hnsw"] and len(h.problems) == 1
    (d / "index.2.hnsw").unlink()
    assert check(d).index == "missing"
    # an index of the right generation but other content (here: of one sample more)
    with Gallery(tmp_path / "other") as g:
        for i in range(3):
            g.enroll(f"p{i}", v[i][None])
        g.enroll("p3", unit(np.random.default_rng(11), 1))
    (d / "index.3.hnsw").write_bytes((tmp_path / "other" / "index.4.hnsw").read_bytes())
    h = check(d)
    assert h.index == "inconsistent" and not h.healthy
    (d / "index.3.hnsw").write_bytes(good)
    (d / "index.9.hnsw").write_bytes(good)
    h = check(d)
    assert h.index == "consistent" and not h.healthy and "newer than the database" in h.problems[0]


def test_check_never_changes_a_broken_gallery(tmp_path):
    for case, (make, why) in BROKEN.items():
        d = tmp_path / case.replace(" ", "_")
        make(d)
        if not (d / DB_FILE).exists():
            continue  # no database at all: check raises "no gallery at" (test_unexpected_state_...)
        before = snapshot(d)
        h = check(d)
        assert not h.healthy and why in h.problems[0] and not h.database_ok, (case, h)
        assert snapshot(d) == before, case


def test_repair_rebuilds_the_index_and_refuses_a_damaged_database(tmp_path):
    d = tmp_path / "g"
    v = filled(d)
    r = repair(d)
    assert r.rebuilt is None and r.before == "consistent"
    (d / "index.3.hnsw").write_bytes(b"garbage")
    r = repair(d)
    assert (r.before, r.rebuilt, r.samples, r.after.healthy) == ("damaged", "index.3.hnsw", 3, True)
    assert Gallery(d, readonly=True).search(v[2][None])[0].identity == "p2"
    # a corrupt database: refused, nothing touched
    con = sqlite3.connect(d / DB_FILE)
    con.execute("PRAGMA writable_schema = ON")
    con.execute("UPDATE sqlite_master SET sql = 'CREATE INDEX samples_person ON samples(source)' "
                "WHERE name = 'samples_person'")
    con.commit()
    con.close()
    (d / "index.3.hnsw").unlink()
    h = check(d)
    assert h.database == "ok" and "missing from index samples_person" in h.integrity and not h.database_ok
    before = snapshot(d)
    with pytest.raises(GalleryError, match="cannot repair .*database itself is damaged"):
        repair(d)
    assert snapshot(d) == before


# --------------------------------------------------------------------- names
@pytest.mark.parametrize("raw,norm", [
    ("alice", "alice"), ("  alice  ", "alice"), ("Ana   María", "Ana María"), ("Ana\u00a0\u3000María", "Ana María"),
    ("Jose\u0301", "Jos\u00e9"), ("x" * 128, "x" * 128), ("O'Brien-Smith, Jr.", "O'Brien-Smith, Jr."),
])
def test_names_are_normalised(raw, norm):
    assert normalize_name(raw) == norm


@pytest.mark.parametrize("raw,why", [
    ("", "must not be empty"), ("   ", "must not be empty"), ("a\tb", "control character (U+0009)"),
    ("alice\n", "control character (U+000A)"), ("a\u200bb", "control character (U+200B)"),
    ("a/b", "path separator"), ("..\\x", "path separator"), ("x" * 129, "129 characters, at most 128"),
])
def test_bad_names_are_refused_with_the_reason(raw, why):
    with pytest.raises(GalleryError, match=re.escape(why)):
        normalize_name(raw)


def test_every_method_uses_the_normalised_name(tmp_path):
    v = unit(np.random.default_rng(12), 2)
    with Gallery(tmp_path / "g") as g:
        g.enroll("  Jose\u0301   Luis ", v[0][None])
        g.enroll("Jos\u00e9 Luis", v[1][None])  # the same person, composed form
        assert g.persons() == [("Jos\u00e9 Luis", 2)]
        assert g.search(v[1][None])[0].identity == "Jos\u00e9 Luis"
        with pytest.raises(GalleryError, match="control character"):
            g.enroll("a\tb", v[0][None])
        assert g.remove(" Jose\u0301  Luis  ") == 2
        assert g.persons() == []


# --------------------------------------------------------------------- the CLI
def cli(*args: str):
    res = CliRunner().invoke(main, list(args))
    assert "Traceback" not in res.output + res.stderr
    return res


def test_cli_list_missing_vs_empty(tmp_path):
    res = cli("gallery", "list", "--gallery", str(tmp_path / "nope"))
    assert res.exit_code == 2 and res.stderr.strip() == f"facewatch: error: no gallery at {tmp_path / 'nope'}"
    assert not (tmp_path / "nope").exists()
    Gallery(tmp_path / "g").close()
    res = cli("gallery", "list", "--gallery", str(tmp_path / "g"))
    assert res.exit_code == 0 and res.stdout.strip() == "(empty gallery)"


def test_cli_remove_normalises_and_refuses_missing_gallery(tmp_path):
    d = tmp_path / "g"
    filled(d)
    res = cli("gallery", "remove", "--gallery", str(d), "  p1 ")
    assert res.exit_code == 0 and res.stdout.strip() == "removed p1 (1 samples)"
    assert [n for n, _ in Gallery(d, readonly=True).persons()] == ["p0", "p2"]
    res = cli("gallery", "remove", "--gallery", str(d), "a/b")
    assert res.exit_code == 2 and "path separator" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = cli("gallery", "remove", "--gallery", str(tmp_path / "nope"), "p0")
    assert res.exit_code == 2 and f"no gallery at {tmp_path / 'nope'}" in res.stderr
    assert not (tmp_path / "nope").exists()


def test_cli_check_and_repair(tmp_path):
    d = tmp_path / "g"
    filled(d)
    res = cli("--json", "gallery", "check", "--gallery", str(d))
    assert res.exit_code == 0
    out = json.loads(res.stdout)
    assert out["healthy"] is True and out["persons"] == 3 and out["index"] == "consistent" and out["integrity"] == "ok"
    (d / "index.3.hnsw").unlink()
    before = snapshot(d)
    res = cli("gallery", "check", "--gallery", str(d))
    assert res.exit_code == 1
    problems = [ln for ln in res.stdout.splitlines() if ln.startswith("problem:")]
    assert len(problems) == 1 and "index.3.hnsw is missing" in problems[0]
    assert snapshot(d) == before  # check only looks
    res = cli("--json", "gallery", "repair", "--gallery", str(d))
    assert res.exit_code == 0 and json.loads(res.stdout)["rebuilt"] == "index.3.hnsw"
    assert cli("gallery", "check", "--gallery", str(d)).exit_code == 0
    res = cli("gallery", "repair", "--gallery", str(d))
    assert res.exit_code == 0 and "nothing to repair" in res.stdout

    (d / DB_FILE).write_bytes(b"")
    before = snapshot(d)
    res = cli("gallery", "check", "--gallery", str(d))
    assert res.exit_code == 1 and "empty file (0 bytes)" in res.stdout
    res = cli("gallery", "repair", "--gallery", str(d))
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1 and "cannot repair" in res.stderr
    assert snapshot(d) == before
    res = cli("gallery", "check", "--gallery", str(tmp_path / "nope"))
    assert res.exit_code == 2 and "no gallery at" in res.stderr


def test_cli_enroll_skips_repeated_photos(tmp_path, astronaut_jpg):
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(astronaut_jpg.read_bytes())
    d = tmp_path / "g"
    res = cli("--json", "gallery", "enroll", "--gallery", str(d), " astro  naut ",
              str(astronaut_jpg), str(astronaut_jpg), str(copy), str(tmp_path / "missing.jpg"))
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["name"], out["enrolled"], out["samples"]) == ("astro naut", 1, 1)
    assert [f["verdict"] for f in out["files"]] == ["enrolled", "skipped", "skipped", "skipped"]
    assert [s["file"] for s in out["skipped"]] == [str(astronaut_jpg), str(copy), str(tmp_path / "missing.jpg")]
    assert res.stderr.splitlines()[:2] == [f"facewatch: skipped {astronaut_jpg}: same photo as {astronaut_jpg}",
                                           f"facewatch: skipped {copy}: same photo as {astronaut_jpg}"]
    assert "no such file" in res.stderr.splitlines()[2]
    assert Gallery(d, readonly=True).persons() == [("astro naut", 1)]
