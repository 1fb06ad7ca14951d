"""``facewatch demo``: a real end-to-end run on a fresh machine, with nothing but the installed packages.

A clip of a known face (the public-domain astronaut photo from scikit-image) is rendered, the face is
enrolled from the still photo, and the clip is replayed as a live camera through every stage until the
first alert arrives in the event store.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from engines.analyzer import FaceAnalyzer
from engines.model_store import ModelStore
from stream.config import Config
from stream.media.clips import Appearance, astronaut_head, render_clip
from stream.pipeline.supervisor import Supervisor, run_until
from stream.records import Event
from stream.store.events import EventStore
from stream.store.gallery import Gallery

DEMO_IDENTITY = "astronaut (demo)"
DEMO_CAMERA = "demo-cam"


class DemoError(RuntimeError):
    """The demo could not show an alert; the message says which step failed."""


def demo_config(base: Config, work: Path, console: bool = True) -> Config:
    """``base`` with one replayed camera, a gallery and event store under ``work``, and no metrics port.
    ``console=False`` when ``work`` is deleted afterwards: the alert line would name a snapshot that is gone."""
    data = base.model_dump(mode="json")
    data["alerts"]["sinks"]["console"] = console
    data.update(data_dir=str(work), cameras=[{"name": DEMO_CAMERA, "source": str(work / "demo.mp4"), "fps": 10, "replay": True}])
    data["matching"]["gallery"] = "gallery"
    data["metrics"]["enabled"] = False
    return Config.model_validate(data)


def run_demo(base: Config, analyzer: FaceAnalyzer, work: Path, timeout_s: float, say: Callable[[str], None],
             keep: bool = False) -> Event:
    """Render, enroll, run live until the first alert; that alert, or ``DemoError``."""
    ModelStore(base.home).prepare(base.recognition.profile, base.detector.model)
    cfg = demo_config(base, work, console=keep)
    head = astronaut_head()
    clip = render_clip(work / "demo.mp4", [Appearance(head, 0.5, 5.5)], size=(1280, 720), duration_s=6.0)
    say(f"demo: clip {clip} (1280x720, the astronaut's face crossing the frame)")
    faces = analyzer.analyze(head)
    if not faces:
        raise DemoError("demo: the enrollment photo gave no face")
    Gallery(cfg.resolve(cfg.matching.gallery), **cfg.gallery_args()).enroll(
        DEMO_IDENTITY, np.stack([faces[0].embedding]), ["skimage astronaut"], crops=[faces[0].crop])
    store_path = cfg.resolve(cfg.alerts.store)
    say("demo: live pipeline started (capture -> detect -> embed -> match -> alert); waiting for an alert")

    def alerted() -> bool:
        return store_path.exists() and bool(EventStore(store_path).events())

    if not run_until(Supervisor(cfg, live=True), until=alerted, timeout_s=timeout_s):
        raise DemoError(f"demo: no alert within {timeout_s:.0f} s")
    return EventStore(store_path).events()[0]
