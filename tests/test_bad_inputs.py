"""The bad-input corpus: every command, fed what a careless user, a broken disk or a hostile peer would feed it.

Each case asserts the exit status, a message that names the problem (file, field or line), no traceback, and
that an enrolled gallery is byte-for-byte intact afterwards. Every CLI case runs twice: as text (one
``facewatch: error:`` line per problem on stderr) and under ``--json`` (one JSON object on stdout with a
stable code and the exit status). The corpus is generated at test time in a temporary directory.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from stream.cli import main
from stream.pipeline.messages import Frame, MessageError, decode


# ----------------------------------------------------------------------------- the corpus on disk
class Corpus:
    """Bad (and a few good) files, made once per module; ``p(name)`` is a path in it."""

    def __init__(self, root: Path, astronaut_bgr: np.ndarray, analyzer) -> None:
        self.root = root
        self.good_jpg = root / "good.jpg"
        cv2.imwrite(str(self.good_jpg), astronaut_bgr)
        self._images(astronaut_bgr)
        self._configs()
        self._galleries(analyzer)
        self._eval_files()
        self._videos()

    def p(self, name: str) -> str:
        return str(self.root / name)

    def write(self, name: str, data: bytes | str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def _images(self, bgr: np.ndarray) -> None:
        data = self.good_jpg.read_bytes()
        self.write("truncated.jpg", data[: len(data) // 3])
        self.write("zero.jpg", b"")
        self.write("text.jpg", "this is not a jpeg\n")
        self.write("text.png", "neither is this a png\n")
        self.write("random.jpg", np.random.default_rng(1).bytes(5000))
        (self.root / "adir.jpg").mkdir()
        cv2.imwrite(str(self.root / "noface.jpg"),
                    cv2.GaussianBlur(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8), (31, 31), 0))
        cv2.imwrite(str(self.root / "thin.png"), np.zeros((1, 20000, 3), np.uint8))
        cv2.imwrite(str(self.root / "tiny.png"), np.zeros((10, 10, 3), np.uint8))
        # a 1 kB PNG announcing 40000 x 40000 pixels (a decompression bomb)
        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        self.write("bomb.png", b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0))
                   + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))
        os.mkfifo(self.root / "fifo.jpg")

    def _configs(self) -> None:
        ok = {"engines": {"engine": "onnxruntime", "threads": 1}, "metrics": {"enabled": False}}
        self.write("cfg_binary.yaml", bytes(range(256)) * 4)
        self.write("cfg_broken.yaml", "cameras: [\n  {name: a\n")
        self.write("cfg_tabs.yaml", "matching:\n\tthreshold: 0.9\n")
        self.write("cfg_list.yaml", "- 1\n- 2\n")
        (self.root / "cfg_dir.yaml").mkdir()
        for name, text in {
            "unknown_top": "surprise: 1\n",
            "unknown_nested": "detect_batch: {max_wiat_ms: 3}\n",
            "fps_type": "cameras: [{name: a, source: x.mp4, fps: fast}]\n",
            "fps_negative": "cameras: [{name: a, source: x.mp4, fps: -3}]\n",
            "score_range": "detector: {score_threshold: 1.5}\n",
            "nms_range": "detector: {nms_threshold: 0}\n",
            "detector_model": "detector: {model: yolo}\n",
            "detector_field": "detector: {model: mediapipe, max_side: 640}\n",
            "detector_range": "detector: {model: mediapipe, range: far}\n",
            "camera_name": "cameras: [{name: 'front door', source: x.mp4}]\n",
            "camera_dup": "cameras: [{name: a, source: x.mp4}, {name: a, source: y.mp4}]\n",
            "camera_scheme": "cameras: [{name: a, source: 'ftp://cam/x'}]\n",
            "camera_empty": "cameras: [{name: a, source: '  '}]\n",
            "camera_webcam": "cameras: [{name: a, source: -1}]\n",
            "camera_noname": "cameras: [{source: x.mp4}]\n",
            "engine": "engines: {engine: cuda}\n",
            "precision": "engines: {precision: fp8}\n",
            "detector_input": "engines: {detector_input: [640]}\n",
            "socket": "sockets: {frames: 'http://x'}\n",
            "metrics_port": "metrics: {port: 70000}\n",
            "votes": "matching: {votes: 0}\n",
            "threshold": "matching: {threshold: 2}\n",
            "calib_profile": "recognition: {profile: accurate}\nmatching: {threshold: 0.9}\n",
            "calib_embedder": "matching:\n  calibration: {profile: fast, embedder: 'fast:other_model', threshold: 0.9, far: 0.001}\n",

            "webhook_url": "alerts: {sinks: {webhook: {url: 'ftp://x'}}}\n",
            "webhook_missing_url": "alerts: {sinks: {webhook: {timeout_s: 3}}}\n",
            "min_face": "quality: {min_face: -1}\n",
            "max_restarts": "supervisor: {max_restarts: 0}\n",
            "cut_threshold": "tracking: {cut_threshold: 0}\n",
            "embed_batch": "embed_batch: {max_batch: 0}\n",
            "cooldown": "alerts: {cooldown_s: -1}\n",
            "alert_on": "cameras: [{name: a, source: x.mp4, alert_on: everyone}]\n",
        }.items():
            self.write(f"cfg_{name}.yaml", text)
        self.ok_config = ok

    def config(self, name: str, **data) -> str:
        """A config file with the good basics plus ``data`` (dicts merge one level deep)."""
        cfg = json.loads(json.dumps(self.ok_config))
        for k, v in data.items():
            cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
        return str(self.write(name, json.dumps(cfg)))

    def _galleries(self, analyzer) -> None:
        from stream.store.gallery import Gallery

        face = analyzer.analyze(cv2.imread(str(self.good_jpg)))[0]
        self.good_gallery = self.root / "gallery"
        Gallery(self.good_gallery).enroll("astronaut", face.embedding[None], ["good.jpg"])
        self.embedding = face.embedding
        Gallery(self.root / "empty_gallery").close()
        (self.root / "zero_gallery").mkdir()
        (self.root / "zero_gallery" / "gallery.sqlite").write_bytes(b"")
        (self.root / "corrupt_gallery").mkdir()
        (self.root / "corrupt_gallery" / "gallery.sqlite").write_bytes(b"SQLite format 3\x00" + os.urandom(3000))
        (self.root / "foreign_gallery").mkdir()
        db = sqlite3.connect(self.root / "foreign_gallery" / "gallery.sqlite")
        db.execute("CREATE TABLE recipes (name TEXT)")
        db.commit()
        db.close()
        self.write("events_corrupt/events.sqlite", b"SQLite format 3\x00" + os.urandom(4000))

    def _eval_files(self) -> None:
        ids = self.root / "ids"
        for name in ("ann", "bob", "cy"):
            for i in (1, 2, 3):
                (ids / name).mkdir(parents=True, exist_ok=True)
                (ids / name / f"{i}.jpg").write_bytes(self.good_jpg.read_bytes() if name == "ann" else
                                                      (self.root / "noface.jpg").read_bytes())
        good_pairs = "1\t2\nann 1 2\nann 2 3\nann 1 bob 1\nann 2 cy 2\nbob 1 cy 1\n"
        self.write("pairs_good.txt", good_pairs)
        self.write("pairs_empty.txt", "")
        self.write("pairs_header.txt", "hello world\nann 1 2\n")
        self.write("pairs_number.txt", "1\t1\nann one 2\nann 1 bob 1\n")
        self.write("pairs_fields.txt", "1\t1\nann 1 2 3 4\n")
        self.write("pairs_same_only.txt", "1\t2\nann 1 2\nann 2 3\n")
        self.write("pairs_binary.txt", bytes(range(256)))
        self.write("pairs_missing_photo.txt", "1\t1\nann 1 7\nann 1 bob 1\n")
        (self.root / "one_identity" / "solo").mkdir(parents=True)
        self.write("truth_json.json", '{"boxes": ')
        self.write("truth_schema.json", '{"faces": []}')
        self.write("truth_box.json", '{"boxes": {"good.jpg": [[1, 2, -3, 4]]}}')
        self.write("truth_short.json", '{"boxes": {"good.jpg": [[1, 2, 3]]}}')
        self.write("truth_missing.json", '{"boxes": {"nothere.jpg": [[1, 2, 3, 4]]}}')
        self.write("truth_empty.json", '{"boxes": {}}')

    def _videos(self) -> None:
        self.write("zero.mp4", b"")
        self.write("text.mp4", "not a video\n")
        os.mkfifo(self.root / "fifo.mp4")
        (self.root / "adir.mp4").mkdir()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, astronaut_bgr, analyzer) -> Corpus:
    return Corpus(tmp_path_factory.mktemp("corpus"), astronaut_bgr, analyzer)


def digest(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- the CLI cases
@dataclass
class Case:
    id: str
    args: Callable[[Corpus], list[str]]
    status: int
    says: tuple[str, ...]  # each must appear in the error text (case-insensitive)
    code: str | None = None  # the --json error code, when it is a specific one
    setup: Callable[[Corpus], object] | None = field(default=None, repr=False)


def C(id_: str, args, status: int, *says: str, code: str | None = None, setup=None) -> Case:
    return Case(id_, args, status, says, code, setup)


def cfg_case(name: str, *says: str) -> Case:
    return C(f"config-{name}", lambda c, n=name: ["-c", c.p(f"cfg_{n}.yaml"), "run"], 2, f"cfg_{name}.yaml", *says,
             code="config")


IMAGE_BAD = [
    ("missing.jpg", "no such file"), ("zero.jpg", "empty"), ("text.jpg", "not an image"), ("text.png", "not an image"),
    ("random.jpg", "random.jpg"), ("adir.jpg", "directory"), ("truncated.jpg", "truncated"),
    ("noface.jpg", "no face"), ("thin.png", "thin.png"), ("tiny.png", "tiny.png"), ("bomb.png", "pixels"),
    ("fifo.jpg", "fifo (named pipe)"),
]

CASES: list[Case] = [
    # --- configuration files
    C("config-missing", lambda c: ["-c", c.p("nope.yaml"), "run"], 2, "nope.yaml", "cannot read", code="config"),
    C("config-directory", lambda c: ["-c", c.p("cfg_dir.yaml"), "events"], 2, "cfg_dir.yaml"),
    C("config-binary", lambda c: ["-c", c.p("cfg_binary.yaml"), "run"], 2, "cfg_binary.yaml", "not a text file", code="config"),
    C("config-broken-yaml", lambda c: ["-c", c.p("cfg_broken.yaml"), "run"], 2, "cfg_broken.yaml:", "not valid yaml", code="config"),
    C("config-tabs", lambda c: ["-c", c.p("cfg_tabs.yaml"), "run"], 2, "cfg_tabs.yaml:2", "not valid yaml", code="config"),
    C("config-top-list", lambda c: ["-c", c.p("cfg_list.yaml"), "run"], 2, "cfg_list.yaml", "mapping", code="config"),
    cfg_case("unknown_top", "surprise", "extra"),
    cfg_case("unknown_nested", "detect_batch.max_wiat_ms"),
    cfg_case("fps_type", "cameras.0.fps"),
    cfg_case("fps_negative", "cameras.0.fps", "greater than 0"),
    cfg_case("score_range", "detector.score_threshold"),
    cfg_case("nms_range", "detector.nms_threshold"),
    cfg_case("detector_model", "detector.model", "yolo", "retinaface, mediapipe"),
    cfg_case("detector_field", "detector.max_side", "mediapipe"),
    cfg_case("detector_range", "detector.range", "short"),
    cfg_case("camera_name", "cameras.0.name"),
    cfg_case("camera_dup", "unique"),
    cfg_case("camera_scheme", "cameras.0.source", "ftp"),
    cfg_case("camera_empty", "cameras.0.source", "empty"),
    cfg_case("camera_webcam", "cameras.0.source", ">= 0"),
    cfg_case("camera_noname", "cameras.0.name", "required"),
    cfg_case("engine", "engines.engine"),
    cfg_case("precision", "engines.precision"),
    cfg_case("detector_input", "engines.detector_input"),
    cfg_case("socket", "sockets.frames", "ipc://"),
    cfg_case("metrics_port", "metrics.port"),
    cfg_case("votes", "matching.votes"),
    cfg_case("threshold", "matching.calibration.threshold"),
    cfg_case("calib_profile", "calibrated for profile 'fast'", "recognition.profile is 'accurate'"),
    cfg_case("calib_embedder", "fast:other_model", "recalibrate"),
    cfg_case("webhook_url", "alerts.sinks.webhook.url"),
    cfg_case("webhook_missing_url", "alerts.sinks.webhook.url", "required"),
    cfg_case("min_face", "quality.min_face"),
    cfg_case("max_restarts", "supervisor.max_restarts"),
    cfg_case("cut_threshold", "tracking.cut_threshold"),
    cfg_case("embed_batch", "embed_batch.max_batch"),
    cfg_case("cooldown", "alerts.cooldown_s"),
    cfg_case("alert_on", "cameras.0.alert_on"),
    # --- run: checked before anything starts
    C("run-legacy-threshold-track-rule", lambda c: ["-c", c.config("r0t.json", cameras=[{"name": "a", "source": c.p("gone.mp4")}],
                                                                  matching={"gallery": c.p("gallery"), "threshold": 0.9},
                                                                  recognition={"rule": "track"}, data_dir=c.p("d0t")),
                                                    "run"], 2, "no track_threshold", "recognition.rule: votes",
      code="preflight"),
    C("run-no-camera", lambda c: ["-c", c.config("r0.json"), "run"], 2, "no enabled camera", code="preflight"),
    C("run-camera-disabled", lambda c: ["-c", c.config("r1.json", cameras=[{"name": "a", "source": c.p("good.jpg"), "enabled": False}]),
                                        "run"], 2, "no enabled camera", code="preflight"),
    C("run-camera-file-missing", lambda c: ["-c", c.config("r2.json", cameras=[{"name": "a", "source": c.p("gone.mp4")}],
                                                            matching={"gallery": c.p("gallery")}, data_dir=c.p("d2")),
                                            "run"], 2, "cameras.0.source", "gone.mp4", code="preflight"),
    C("run-camera-dir", lambda c: ["-c", c.config("r3.json", cameras=[{"name": "a", "source": c.p("adir.mp4")}],
                                                   matching={"gallery": c.p("gallery")}, data_dir=c.p("d3")),
                                   "run"], 2, "cameras.0.source", "not a regular file", code="preflight"),
    C("run-camera-fifo", lambda c: ["-c", c.config("r3b.json", cameras=[{"name": "a", "source": c.p("fifo.mp4")}],
                                                    matching={"gallery": c.p("gallery")}, data_dir=c.p("d3b")),
                                    "run"], 2, "cameras.0.source", "not a regular file", code="preflight"),
    C("run-rtsp-no-host", lambda c: ["-c", c.config("r4.json", cameras=[{"name": "a", "source": "rtsp:///stream"}],
                                                     matching={"gallery": c.p("gallery")}, data_dir=c.p("d4")),
                                     "run"], 2, "cameras.0.source", "no host", code="preflight"),
    C("run-rtsp-bad-port", lambda c: ["-c", c.config("r5.json", cameras=[{"name": "a", "source": "rtsp://cam:99999/x"}],
                                                      matching={"gallery": c.p("gallery")}, data_dir=c.p("d5")),
                                      "run"], 2, "cameras.0.source", "port", code="preflight"),
    C("run-gallery-missing", lambda c: ["-c", c.config("r6.json", cameras=[{"name": "a", "source": c.p("good.jpg")}],
                                                        matching={"gallery": c.p("no_gallery")}, data_dir=c.p("d6")),
                                        "run"], 2, "matching.gallery", "no gallery", code="preflight"),
    C("run-gallery-empty", lambda c: ["-c", c.config("r7.json", cameras=[{"name": "a", "source": c.p("good.jpg")}],
                                                      matching={"gallery": c.p("empty_gallery")}, data_dir=c.p("d7")),
                                      "run"], 2, "matching.gallery", "empty", code="preflight"),
    C("run-gallery-corrupt", lambda c: ["-c", c.config("r8.json", cameras=[{"name": "a", "source": c.p("good.jpg")}],
                                                        matching={"gallery": c.p("corrupt_gallery")}, data_dir=c.p("d8")),
                                        "run"], 2, "matching.gallery", code="preflight"),
    C("run-gallery-zero-byte", lambda c: ["-c", c.config("r9.json", cameras=[{"name": "a", "source": c.p("good.jpg")}],
                                                          matching={"gallery": c.p("zero_gallery")}, data_dir=c.p("d9")),
                                          "run"], 2, "matching.gallery", code="preflight"),
    C("run-data-dir-is-file", lambda c: ["-c", c.config("r10.json", cameras=[{"name": "a", "source": c.p("good.jpg")}],
                                                         matching={"gallery": c.p("gallery")}, data_dir=c.p("good.jpg")),
                                         "run"], 2, "data_dir", code="preflight"),
    C("run-snapshots-is-file", lambda c: ["-c", c.config("r11.json", cameras=[{"name": "a", "source": c.p("good.jpg")}],
                                                          matching={"gallery": c.p("gallery")}, data_dir=c.p("d11"),
                                                          alerts={"snapshots": c.p("good.jpg")}),
                                          "run"], 2, "alerts.snapshots", code="preflight"),
    C("run-jsonl-is-dir", lambda c: ["-c", c.config("r12.json", cameras=[{"name": "a", "source": c.p("good.jpg")}],
                                                     matching={"gallery": c.p("gallery")}, data_dir=c.p("d12"),
                                                     alerts={"sinks": {"jsonl": c.p("adir.jpg")}}),
                                     "run"], 2, "alerts.sinks.jsonl", "directory", code="preflight"),
    C("run-event-store-corrupt", lambda c: ["-c", c.config("r13.json", cameras=[{"name": "a", "source": c.p("good.jpg")}],
                                                            matching={"gallery": c.p("gallery")}, data_dir=c.p("d13"),
                                                            alerts={"store": c.p("events_corrupt/events.sqlite")}),
                                            "run"], 2, "alerts.store", code="preflight"),
    C("run-metrics-port-taken", lambda c: ["-c", c.config("r14.json", cameras=[{"name": "a", "source": c.p("good.jpg")}],
                                                           matching={"gallery": c.p("gallery")}, data_dir=c.p("d14"),
                                                           metrics={"enabled": True, "port": c.taken_port}),
                                           "run"], 2, "metrics.port", "in use", code="preflight"),
    C("run-zmq-pub-port-taken", lambda c: ["-c", c.config("r15.json", cameras=[{"name": "a", "source": c.p("good.jpg")}],
                                                           matching={"gallery": c.p("gallery")}, data_dir=c.p("d15"),
                                                           alerts={"sinks": {"zmq_pub": f"tcp://127.0.0.1:{c.taken_port}"}}),
                                           "run"], 2, "alerts.sinks.zmq_pub", code="preflight"),
    C("run-zmq-pub-no-port", lambda c: ["-c", c.config("r16.json", cameras=[{"name": "a", "source": c.p("good.jpg")}],
                                                        matching={"gallery": c.p("gallery")}, data_dir=c.p("d16"),
                                                        alerts={"sinks": {"zmq_pub": "tcp://127.0.0.1"}}),
                                        "run"], 2, "alerts.sinks.zmq_pub", "tcp://host:port", code="preflight"),
    C("run-many-problems", lambda c: ["-c", c.config("r17.json", cameras=[{"name": "a", "source": c.p("gone.mp4")}],
                                                      matching={"gallery": c.p("no_gallery")}, data_dir=c.p("d17"),
                                                      alerts={"sinks": {"jsonl": c.p("adir.jpg")}}),
                                      "run"], 2, "cameras.0.source", "matching.gallery", "alerts.sinks.jsonl", code="preflight"),
    # --- usage
    C("usage-unknown-command", lambda c: ["frobnicate"], 2, "no such command", code="usage"),
    C("usage-verify-missing-arg", lambda c: ["verify", c.p("good.jpg")], 2, "missing argument", code="usage"),
    C("usage-verify-extra-arg", lambda c: ["verify", c.p("good.jpg"), c.p("good.jpg"), "x"], 2, "unexpected extra", code="usage"),
    C("usage-unknown-option", lambda c: ["verify", "--frobnicate", "a", "b"], 2, "no such option", code="usage"),
    C("usage-scan-every-zero", lambda c: ["scan", "--every", "0", c.p("zero.mp4")], 2, "--every", code="usage"),
    C("usage-scan-no-video", lambda c: ["scan"], 2, "missing argument", code="usage"),
    C("usage-calibrate-far-2", lambda c: ["calibrate", "--pairs", c.p("pairs_good.txt"), "--root", c.p("ids"),
                                          "--target-far", "2"], 2, "--target-far", code="usage"),
    C("usage-calibrate-far-0", lambda c: ["calibrate", "--pairs", c.p("pairs_good.txt"), "--root", c.p("ids"),
                                          "--target-far", "0"], 2, "--target-far", code="usage"),
    C("usage-calibrate-gallery-size-0", lambda c: ["calibrate", "--pairs", c.p("pairs_good.txt"), "--root", c.p("ids"),
                                                   "--gallery-size", "0"], 2, "--gallery-size", code="usage"),
    C("usage-eval-identify-enroll-0", lambda c: ["eval", "identify", "--root", c.p("ids"), "--enroll", "0"], 2, "--enroll",
      code="usage"),
    C("usage-eval-pairs-missing", lambda c: ["eval", "verify", "--pairs", c.p("nope.txt"), "--root", c.p("ids")], 2,
      "--pairs", code="usage"),
    C("usage-eval-root-is-file", lambda c: ["eval", "verify", "--pairs", c.p("pairs_good.txt"), "--root", c.p("good.jpg")],
      2, "--root", code="usage"),
    C("usage-events-since", lambda c: ["-c", c.config("e0.json", data_dir=c.p("d_ev")), "events", "--since", "last tuesday"],
      2, "--since"),
    C("usage-enroll-no-images", lambda c: ["gallery", "enroll", "--gallery", c.p("gallery"), "x"], 2, "missing argument",
      code="usage"),
    C("usage-config-option-dir", lambda c: ["-c", c.root.as_posix(), "events"], 2, "directory"),
    C("models-prepare-from-foreign-file", lambda c: ["models", "prepare", "--from", c.p("good.jpg")], 2, "good.jpg",
      "not a pinned model source"),
    C("models-prepare-from-missing", lambda c: ["models", "prepare", "--from", c.p("no_such.whl")], 2, "no_such.whl"),
    C("models-prepare-from-directory", lambda c: ["models", "prepare", "--from", c.root.as_posix()], 2, "directory"),
    C("models-prepare-arcface-without-licence", lambda c: ["-c", c.config("lic.json", home=c.p("fresh_home")), "models",
                                                           "prepare", "--profile", "arcface"], 2, "non-commercial",
      "--accept-model-license"),
    C("models-prepare-unknown-detector", lambda c: ["models", "prepare", "--detector", "yolo"], 2, "yolo", code="usage"),
    C("usage-build-engines-without-tensorrt", lambda c: ["-c", c.config("m0.json", engines={"engine": "tensorrt"}),
                                                         "models", "build-engines"], 2, "tensorrt", code="backend"),
    # --- photos: verify, identify
    *[C(f"verify-{name}", lambda c, n=name: ["verify", c.p(n), c.p("good.jpg")], 2, name, why) for name, why in IMAGE_BAD],
    *[C(f"identify-{name}", lambda c, n=name: ["identify", "--gallery", c.p("gallery"), c.p(n)], 2, name)
      for name, _ in IMAGE_BAD if name != "noface.jpg"],
    C("identify-gallery-missing", lambda c: ["identify", "--gallery", c.p("no_gallery"), c.p("good.jpg")], 2, "no gallery"),
    C("identify-gallery-empty", lambda c: ["identify", "--gallery", c.p("empty_gallery"), c.p("good.jpg")], 2, "empty"),
    C("identify-gallery-corrupt", lambda c: ["identify", "--gallery", c.p("corrupt_gallery"), c.p("good.jpg")], 2,
      "corrupt_gallery"),
    C("identify-gallery-foreign", lambda c: ["identify", "--gallery", c.p("foreign_gallery"), c.p("good.jpg")], 2,
      "foreign_gallery"),
    C("identify-gallery-zero", lambda c: ["identify", "--gallery", c.p("zero_gallery"), c.p("good.jpg")], 2, "zero_gallery"),
    # --- the gallery: nothing is ever damaged
    *[C(f"enroll-name-{why}", lambda c, n=name: ["gallery", "enroll", "--gallery", c.p("gallery"), n, c.p("good.jpg")], 2,
        "name") for name, why in [("", "empty"), ("   ", "spaces"), ("a\tb", "tab"), ("a\nb", "newline"),
                                  ("a/b", "slash"), ("a\\b", "backslash"), ("x" * 200, "too-long"), ("a\x00b", "nul"),
                                  ("a\u200bb", "zero-width")]],
    C("enroll-only-bad-photos", lambda c: ["gallery", "enroll", "--gallery", c.p("gallery"), "bob", c.p("noface.jpg"),
                                           c.p("text.jpg")], 2, "nothing enrolled"),
    C("enroll-zero-byte-db", lambda c: ["gallery", "enroll", "--gallery", c.p("zero_gallery"), "bob", c.p("good.jpg")], 2,
      "zero_gallery"),
    C("enroll-corrupt-db", lambda c: ["gallery", "enroll", "--gallery", c.p("corrupt_gallery"), "bob", c.p("good.jpg")], 2,
      "corrupt_gallery"),
    C("enroll-foreign-db", lambda c: ["gallery", "enroll", "--gallery", c.p("foreign_gallery"), "bob", c.p("good.jpg")], 2,
      "foreign_gallery"),
    C("enroll-gallery-is-file", lambda c: ["gallery", "enroll", "--gallery", c.p("good.jpg"), "bob", c.p("good.jpg")], 2,
      "good.jpg"),
    C("list-missing", lambda c: ["gallery", "list", "--gallery", c.p("no_gallery")], 2, "no gallery"),
    C("list-corrupt", lambda c: ["gallery", "list", "--gallery", c.p("corrupt_gallery")], 2, "corrupt_gallery"),
    C("list-zero", lambda c: ["gallery", "list", "--gallery", c.p("zero_gallery")], 2, "zero_gallery"),
    C("remove-unknown", lambda c: ["gallery", "remove", "--gallery", c.p("gallery"), "ghost"], 2, "ghost"),
    C("remove-bad-name", lambda c: ["gallery", "remove", "--gallery", c.p("gallery"), "a\tb"], 2, "name"),
    C("remove-missing-gallery", lambda c: ["gallery", "remove", "--gallery", c.p("no_gallery"), "astronaut"], 2, "no gallery"),
    C("check-corrupt", lambda c: ["gallery", "check", "--gallery", c.p("corrupt_gallery")], 1, "corrupt_gallery"),
    C("check-missing", lambda c: ["gallery", "check", "--gallery", c.p("no_gallery")], 2, "no gallery"),
    C("repair-corrupt-db", lambda c: ["gallery", "repair", "--gallery", c.p("corrupt_gallery")], 2, "corrupt_gallery"),
    # --- evaluation files
    C("eval-pairs-empty", lambda c: ["eval", "verify", "--pairs", c.p("pairs_empty.txt"), "--root", c.p("ids")], 2,
      "pairs_empty.txt", "empty", code="eval_input"),
    C("eval-pairs-header", lambda c: ["eval", "verify", "--pairs", c.p("pairs_header.txt"), "--root", c.p("ids")], 2,
      "pairs_header.txt:1", code="eval_input"),
    C("eval-pairs-number", lambda c: ["eval", "verify", "--pairs", c.p("pairs_number.txt"), "--root", c.p("ids")], 2,
      "pairs_number.txt:2", "whole numbers", code="eval_input"),
    C("eval-pairs-fields", lambda c: ["eval", "verify", "--pairs", c.p("pairs_fields.txt"), "--root", c.p("ids")], 2,
      "pairs_fields.txt:2", "fields", code="eval_input"),
    C("eval-pairs-same-only", lambda c: ["eval", "verify", "--pairs", c.p("pairs_same_only.txt"), "--root", c.p("ids")], 2,
      "different-person", code="eval_input"),
    C("eval-pairs-binary", lambda c: ["eval", "verify", "--pairs", c.p("pairs_binary.txt"), "--root", c.p("ids")], 2,
      "not a text file", code="eval_input"),
    C("eval-wrong-root", lambda c: ["eval", "verify", "--pairs", c.p("pairs_good.txt"), "--root", c.p("one_identity")], 2,
      "--root", "not there", code="eval_input"),
    C("eval-photo-missing", lambda c: ["eval", "verify", "--pairs", c.p("pairs_missing_photo.txt"), "--root", c.p("ids")], 2,
      "7.jpg", code="eval_input"),
    C("eval-plot-no-dir", lambda c: ["eval", "verify", "--pairs", c.p("pairs_good.txt"), "--root", c.p("ids"), "--plot",
                                     c.p("nodir/roc.png")], 2, "--plot", code="eval_input"),
    C("eval-identify-one-identity", lambda c: ["eval", "identify", "--root", c.p("one_identity")], 2, "2 identities",
      code="eval_input"),
    C("eval-identify-too-few-photos", lambda c: ["eval", "identify", "--root", c.p("ids"), "--enroll", "5"], 2,
      "--enroll 5", code="eval_input"),
    C("eval-identify-only-nothing", lambda c: ["eval", "identify", "--root", c.p("ids"), "--only", "zz"], 2, "'zz'",
      code="eval_input"),
    C("eval-detect-bad-json", lambda c: ["eval", "detect", "--images", c.root.as_posix(), "--truth", c.p("truth_json.json")],
      2, "truth_json.json", "json", code="eval_input"),
    C("eval-detect-schema", lambda c: ["eval", "detect", "--images", c.root.as_posix(), "--truth", c.p("truth_schema.json")],
      2, "truth_schema.json", "boxes", code="eval_input"),
    C("eval-detect-negative-box", lambda c: ["eval", "detect", "--images", c.root.as_posix(), "--truth",
                                             c.p("truth_box.json")], 2, "good.jpg", "positive", code="eval_input"),
    C("eval-detect-short-box", lambda c: ["eval", "detect", "--images", c.root.as_posix(), "--truth",
                                          c.p("truth_short.json")], 2, "[x, y, w, h]", code="eval_input"),
    C("eval-detect-image-missing", lambda c: ["eval", "detect", "--images", c.root.as_posix(), "--truth",
                                              c.p("truth_missing.json")], 2, "nothere.jpg", code="eval_input"),
    C("eval-detect-empty", lambda c: ["eval", "detect", "--images", c.root.as_posix(), "--truth", c.p("truth_empty.json")],
      2, "at least one image", code="eval_input"),
    C("calibrate-bad-pairs", lambda c: ["calibrate", "--pairs", c.p("pairs_number.txt"), "--root", c.p("ids")], 2,
      "pairs_number.txt:2", code="eval_input"),
    C("calibrate-wrong-root", lambda c: ["calibrate", "--pairs", c.p("pairs_good.txt"), "--root", c.p("one_identity")], 2,
      "--root", code="eval_input"),
    C("calibrate-too-few-impostors", lambda c: ["calibrate", "--pairs", c.p("pairs_good.txt"), "--root", c.p("ids"),
                                                "--target-far", "0.001"], 2, "impostor"),
    C("calibrate-write-broken-yaml", lambda c: ["calibrate", "--pairs", c.p("pairs_good.txt"), "--root", c.p("ids"),
                                                "--target-far", "0.9", "--write", c.p("cfg_broken.yaml")], 2,
      "cfg_broken.yaml", "not changed"),
    # --- recorded video and events
    C("scan-gallery-missing", lambda c: ["scan", "--gallery", c.p("no_gallery"), c.p("zero.mp4")], 2, "no gallery"),
    C("scan-gallery-empty", lambda c: ["scan", "--gallery", c.p("empty_gallery"), c.p("zero.mp4")], 2, "empty"),
    *[C(f"scan-{name}", lambda c, n=name: ["-c", c.config("s0.json", data_dir=c.p("d_scan")), "scan", "--gallery",
                                           c.p("gallery"), c.p(n)], 3, name)
      for name in ("zero.mp4", "text.mp4", "fifo.mp4", "adir.mp4", "gone.mp4")],
    C("events-store-missing", lambda c: ["-c", c.config("e1.json", data_dir=c.p("d_none")), "events"], 2, "no event store"),
    C("events-store-corrupt", lambda c: ["-c", c.config("e2.json", alerts={"store": c.p("events_corrupt/events.sqlite")}),
                                         "events"], 2, "events.sqlite"),
    C("events-redeliver-unknown-id", lambda c: ["-c", c.config("e3.json", alerts={"store": c.p("d_ev2/events.sqlite")}),
                                                "events", "redeliver", "--id", "999"], 2, "999",
      setup=lambda c: __import__("stream.store.events", fromlist=["EventStore"]).EventStore(c.root / "d_ev2/events.sqlite")),
]


@pytest.fixture(scope="module")
def taken_port(corpus):
    """A port something is already listening on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    corpus.taken_port = s.getsockname()[1]
    yield corpus.taken_port
    s.close()


def run_cli(args: list[str]):
    return CliRunner().invoke(main, args)


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, as_json: bool, corpus: Corpus, taken_port) -> None:
    if case.setup:
        case.setup(corpus)
    before = digest(corpus.good_gallery)
    args = case.args(corpus)
    res = run_cli(["--json", *args] if as_json else args)
    out = (res.stdout or "") + (res.stderr or "")
    assert res.exit_code == case.status, f"exit {res.exit_code}, expected {case.status}: {out[-1500:]}"
    assert "Traceback" not in out, out[-1500:]
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    if as_json:
        obj = json.loads(res.stdout.strip().splitlines()[-1])  # one object, on the last line of stdout
        text = json.dumps(obj).lower()
        if case.status == 2:
            assert obj["exit_status"] == 2 and obj["error"]["code"], obj
            if case.code:
                assert obj["error"]["code"] == case.code, obj
    else:
        text = out.lower()
        if case.status == 2:
            errors = [ln for ln in res.stderr.splitlines() if ln.startswith("facewatch: error:")]
            assert errors, res.stderr
    for s in case.says:
        assert s.lower() in text, f"{s!r} not in: {text[-1500:]}"
    assert digest(corpus.good_gallery) == before, "the enrolled gallery changed"


# ----------------------------------------------------------------------------- malformed messages on a socket
GOOD = Frame("cam", 1, 1.0, image=np.zeros((4, 4, 3), np.uint8)).encode()
HEADER = json.loads(bytes(GOOD[0]))


def _header(**change) -> bytes:
    return json.dumps({**HEADER, **change}).encode()


MESSAGES = {
    "empty": [],
    "not-json": [b"{not json", bytes(GOOD[1])],
    "not-utf8": [b"\xff\xfe\x00", bytes(GOOD[1])],
    "header-is-list": [b"[1, 2]"],
    "unknown-type": [_header(t="evil"), bytes(GOOD[1])],
    "too-few-arrays": [bytes(GOOD[0])],
    "too-many-arrays": [bytes(GOOD[0]), bytes(GOOD[1]), b"extra"],
    "bad-dtype": [_header(arrays=[["image", "object", [4, 4, 3]]]), bytes(GOOD[1])],
    "unknown-array": [_header(arrays=[["secret", "uint8", [4, 4, 3]]]), bytes(GOOD[1])],
    "bad-shape": [_header(arrays=[["image", "uint8", [5, 5, 3]]]), bytes(GOOD[1])],
    "unknown-field": [_header(spy=1), bytes(GOOD[1])],
    "camera-not-string": [_header(camera=7), bytes(GOOD[1])],
    "ts-not-number": [_header(ts_capture="now"), bytes(GOOD[1])],
    "missing-field": [json.dumps({k: v for k, v in HEADER.items() if k != "seq"}).encode(), bytes(GOOD[1])],
}


@pytest.mark.parametrize("name", list(MESSAGES))
def test_malformed_message_is_refused_with_a_reason(name: str) -> None:
    with pytest.raises(MessageError) as info:
        decode(MESSAGES[name], (Frame,))
    assert str(info.value)  # says why; a receiving stage logs it, counts it and goes on


def test_the_good_message_decodes() -> None:
    """The corpus above is malformed only where it says: the unaltered message decodes."""
    assert decode(GOOD, (Frame,)).camera == "cam"


def test_the_corpus_is_big_enough() -> None:
    assert len(CASES) + len(MESSAGES) >= 120
