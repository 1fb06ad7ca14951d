"""``facewatch gallery enroll NAME --video FILE`` with the real models on rendered clips of real face photos:
the best distinct looks of the one person are enrolled, a clip with two people is refused until told which, and
bad input is one line, exit 2, with the gallery unchanged."""
from __future__ import annotations

import json
import os
import re
import stat
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from stream.cli import main
from stream.config import load_config
from stream.media.clips import Appearance, astronaut_head, render_clip
from stream.media.images import load_image
from stream.records import Event
from stream.store.events import EventStore
from stream.store.gallery import Gallery
from stream.scan.enroll import duplicate_cosine

pytestmark = pytest.mark.timeout(120)


def ids_dir(faces_root: Path) -> Path:
    return faces_root / "wild_dev" / "ids"


PHOTO_S = 0.8  # each photo of the one-person clip is on screen this long


def one_person_clip(path: Path, photos: list[np.ndarray], size=(640, 360), fps: float = 25.0) -> Path:
    """One person in front of the camera for the whole clip, one track: their photos one after the other at the
    same place (drifting a little), each for ``PHOTO_S``: several different looks of one face."""
    w, h = size
    bg = cv2.resize(cv2.GaussianBlur(np.random.default_rng(0).integers(40, 200, (h // 8, w // 8, 3), dtype=np.uint8),
                                     (5, 5), 0), (w, h), interpolation=cv2.INTER_CUBIC)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for i in range(int(len(photos) * PHOTO_S * fps)):
        t = i / fps
        face = photos[min(len(photos) - 1, int(t / PHOTO_S))]
        face = cv2.resize(face, (int(face.shape[1] * 200 / face.shape[0]), 200))
        x, y = int(200 + 20 * t), 80
        frame = bg.copy()
        frame[y:y + face.shape[0], x:x + face.shape[1]] = face
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory, faces_root):
    """amy.mp4: four different photos of one person (one track); two.mp4: the astronaut (large), Madonna
    (smaller), the astronaut again; blank.mp4: no face at all."""
    d = tmp_path_factory.mktemp("clips")
    ids = ids_dir(faces_root)
    amy = [load_image(ids / "bbt_amy" / f"{i}.jpg") for i in range(1, 5)]
    two = [Appearance(astronaut_head(), 0.0, 1.2, height=240),
           Appearance(load_image(ids / "c5_madonna" / "1.jpg"), 1.6, 2.8, height=170),
           Appearance(astronaut_head(), 3.2, 4.0, height=240)]
    return {"amy": one_person_clip(d / "amy.mp4", amy),
            "two": render_clip(d / "two.mp4", two, size=(640, 360), duration_s=4.0),
            "blank": render_clip(d / "blank.mp4", [], size=(320, 240), duration_s=1.0)}


@pytest.fixture()
def world(tmp_path, fw_home):
    """A config whose data dir holds the gallery and the event store (with one unknown face of amy, from a photo
    the clip does not show)."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(tmp_path), "home": str(fw_home),
                                   "engines": {"engine": "onnxruntime", "threads": 2}}))
    return {"cfg": cfg, "gallery": tmp_path / "gallery", "store": tmp_path / "events.sqlite"}


def cli(world, *args: str):
    res = CliRunner().invoke(main, ["-c", str(world["cfg"]), *args])
    assert "Traceback" not in res.output + res.stderr, res.output + res.stderr
    return res


def files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())} if d.is_dir() else {}


def test_enrolls_the_best_distinct_looks_and_offers_past_events(world, clips, analyzer, faces_root):
    cfg = load_config(world["cfg"])
    amy5 = analyzer.analyze(load_image(ids_dir(faces_root) / "bbt_amy" / "5.jpg"))[0].embedding  # not in the clip
    st = EventStore(world["store"])
    t = time.time() - 600
    past = st.add(Event(ts=t, ts_capture=t, camera="door", kind="unknown", score=0.5, threshold=cfg.threshold,
                        track_id=1, latency_ms=50.0, embedder=cfg.embedder_id), embedding=amy5)
    st.close()

    res = cli(world, "--json", "gallery", "enroll", "amy", "--video", str(clips["amy"]), "--max-samples", "3")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["name"], out["enrolled"], out["samples"]) == ("amy", 3, 3)
    assert [(t["track"], t["person"]) for t in out["tracks"]] == [(1, 1)]
    kept = out["kept"]
    assert len(kept) == 3 and all({"frame", "time", "quality", "det_score"} <= set(k) for k in kept)
    assert len({int(k["time"] / PHOTO_S) for k in kept}) == 3  # three different looks, not three frames of one
    assert [k["quality"] for k in kept] == sorted((k["quality"] for k in kept), reverse=True)
    assert out["rejected"]["duplicate"] > 0 and out["rejected"]["over_limit"] > 0
    assert out["frames_decoded"] == 80 and out["frames_sampled"] == len(range(0, 80, round(25 / 4)))
    assert out["relabel_candidates"] == 1

    with Gallery(world["gallery"], readonly=True) as g:
        vecs = g.sample_vectors("amy")
        assert g.embedder == cfg.embedder_id
        samples, _ = g.kept_crops()
        assert len(samples) == 3 and all(blob is not None and blob[:3] == b"\xff\xd8\xff" for _, blob in samples)
        sources = [r[0] for r in g.db.execute("SELECT source FROM samples ORDER BY id")]
    sims = vecs @ vecs.T
    assert sims[~np.eye(3, dtype=bool)].max() < duplicate_cosine(cfg.threshold)  # distinct
    assert sources == [f"video:amy.mp4@{k['time']:.2f}s" for k in kept]
    for p in world["gallery"].iterdir():
        assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, p

    # the human form says what was kept and points at the past events
    res = cli(world, "gallery", "enroll", "amy", "--video", str(clips["amy"]), "--max-samples", "1")
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("kept\tframe ") and lines[1].startswith("rejected: ")
    assert lines[-1] == "1 past unknown event matches amy: facewatch events relabel-candidates amy"
    res = cli(world, "--json", "events", "relabel-candidates", "amy")
    assert [c["id"] for c in json.loads(res.stdout)["candidates"]] == [past.id]


def test_two_people_are_refused_until_told_which(world, clips, analyzer, faces_root):
    res = cli(world, "gallery", "enroll", "who", "--video", str(clips["two"]))
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1, res.output
    line = res.stderr.strip()
    assert "2 different people" in line and "--track N" in line and "--largest" in line
    m = re.search(r"person 1: track 1 \(\d+ frames, first seen at 0\.0 s\)(, track \d+ \(\d+ frames, first seen at "
                  r"[\d.]+ s\))*; person 2: track (\d+) \(\d+ frames, first seen at ([\d.]+) s\)", line)
    assert m and 1.6 <= float(m.group(3)) < 2.8, line
    madonnas_track = m.group(2)
    assert not world["gallery"].exists()  # nothing written, not even an empty gallery

    astro = analyzer.analyze(astronaut_head())[0].embedding
    madonna = analyzer.analyze(load_image(ids_dir(faces_root) / "c5_madonna" / "1.jpg"))[0].embedding
    res = cli(world, "--json", "gallery", "enroll", "madonna", "--video", str(clips["two"]), "--track", madonnas_track)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert int(madonnas_track) in out["person_tracks"] and 1 not in out["person_tracks"]
    assert out["rejected"]["other_person"] > 0
    res = cli(world, "--json", "gallery", "enroll", "astronaut", "--video", str(clips["two"]), "--largest")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    first_seen = {t["track"]: t["first_seen"] for t in out["tracks"]}
    assert out["person_tracks"][0] == 1 and int(madonnas_track) not in out["person_tracks"]
    assert max(first_seen[t] for t in out["person_tracks"]) >= 3.2  # the same face when it comes back
    with Gallery(world["gallery"], readonly=True) as g:
        m, a = g.sample_vectors("madonna"), g.sample_vectors("astronaut")
    assert (m @ madonna).min() > (m @ astro).max()  # Madonna's faces were enrolled as madonna
    assert (a @ astro).min() > (a @ madonna).max()

    res = cli(world, "gallery", "enroll", "x", "--video", str(clips["two"]), "--track", "9")
    assert res.exit_code == 2 and "there is no track 9" in res.stderr


@pytest.mark.timeout(60)  # a FIFO must be refused, never opened (that would block for ever)
def test_bad_videos_are_one_line_exit_2_and_change_nothing(world, clips, tmp_path, astronaut_jpg):
    res = cli(world, "gallery", "enroll", "someone", str(astronaut_jpg))
    assert res.exit_code == 0, res.output
    before = files(world["gallery"])
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clips["amy"].read_bytes()[:1500])
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    cases = {tmp_path / "missing.mp4": "no such file", fifo: "FIFO", junk: "cannot be opened as a video",
             truncated: "cannot be opened as a video", empty: "empty file", tmp_path: "directory",
             clips["blank"]: "no usable face"}
    for path, why in cases.items():
        res = cli(world, "gallery", "enroll", "someone", "--video", str(path))
        assert res.exit_code == 2, (path, res.output)
        assert len(res.stderr.strip().splitlines()) == 1 and why in res.stderr and str(path) in res.stderr, res.stderr
        assert files(world["gallery"]) == before, path
    res = cli(world, "--json", "gallery", "enroll", "someone", "--video", str(clips["blank"]))
    err = json.loads(res.stdout)
    assert res.exit_code == 2 and err["error"]["code"] == "video" and err["exit_status"] == 2
    for args, why in ((["--video", str(clips["amy"]), str(astronaut_jpg)], "not both"),
                      ([str(astronaut_jpg), "--track", "1"], "--video only"),
                      ([], "--video FILE")):
        res = cli(world, "gallery", "enroll", "someone", *args)
        assert res.exit_code == 2 and why in res.stderr, res.output
    assert files(world["gallery"]) == before
    assert Gallery(world["gallery"], readonly=True).persons() == [("someone", 1)]
