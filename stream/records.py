"""The records facewatch produces, one type each: an alert ``Event`` and the ``ScanReport`` of recorded video.

Why typed: the alert stage, the event store, every sink, ``scan``, ``events`` and the CLI's JSON output
all handle the same records; one pydantic model each means one list of fields, one JSON shape and a
validation error (not a KeyError three modules later) when something is missing.
"""
from __future__ import annotations

import time
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

EventKind = Literal["watchlist", "unknown"]
WebhookState = Literal["none", "pending", "delivered", "failed"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Event(_Record):
    """One alert, as stored (``events.sqlite``) and delivered. Snapshots are paths, never image bytes."""

    id: int | None = Field(None, description="event store row id; None until stored")
    ts: float = Field(..., description="wall-clock time the alert was raised")
    ts_capture: float = Field(..., description="capture time of the frame that decided it")
    camera: str
    kind: EventKind
    identity: str | None = Field(None, description="enrolled name; None for an unknown face")
    score: float = Field(..., description="best cosine similarity of the track to that identity")
    threshold: float
    track_id: int
    latency_ms: float = Field(..., description="capture -> alert")
    box: list[float] | None = None
    chip_path: str | None = None
    frame_path: str | None = None
    webhook_state: WebhookState = "none"
    webhook_attempts: int = 0

    #: What leaves the machine (sinks, ``events --json``): no delivery bookkeeping, no images.
    PUBLIC_FIELDS: ClassVar[tuple[str, ...]] = ("id", "ts", "ts_capture", "camera", "kind", "identity", "score", "threshold",
                                      "track_id", "latency_ms", "box", "chip_path", "frame_path")

    def public(self) -> dict:
        return self.model_dump(include=set(self.PUBLIC_FIELDS))

    def console_line(self) -> str:
        who = self.identity or "UNKNOWN face"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.ts_capture))
        return (f"ALERT {self.kind}: {who} on camera {self.camera} at {when} score {self.score:.4f} "
                f"(threshold {self.threshold:.4f}) track {self.track_id} latency {self.latency_ms:.0f} ms "
                f"snapshot {self.frame_path or '-'}")


class ScanEvent(_Record):
    """An alert found in recorded video, in video time."""

    kind: EventKind
    identity: str | None
    score: float
    threshold: float
    video_time: float
    frame_index: int | None
    track_id: int
    track_start: float | None
    box: list[float]


class Appearance(_Record):
    """When an enrolled person was on screen in one video (over all their tracks)."""

    first_seen: float
    last_seen: float
    best_score: float


class VideoReport(_Record):
    """The result for one video file. ``error`` is set when the file could not be read."""

    file: str
    camera: str
    frames: int = 0
    error: str | None = None
    events: list[ScanEvent] = Field(default_factory=list)
    appearances: dict[str, Appearance] = Field(default_factory=dict)
    track_identity: dict[str, str | None] = Field(default_factory=dict, description="track id -> identity")
    observations: list[tuple[int, int, list[float]]] | None = Field(
        None, description="(frame index, track id, box) of every face, kept only for --annotate")

    def human_lines(self) -> list[str]:
        lines = [f"{self.file}: {self.frames} frames" + (f"  ERROR: {self.error}" if self.error else "")]
        lines += [f"  t={e.video_time:.2f}s frame {e.frame_index}: {e.identity or 'UNKNOWN'} score {e.score:.4f}"
                  for e in self.events]
        lines += [f"  {n}: first {a.first_seen:.2f}s last {a.last_seen:.2f}s best {a.best_score:.4f}"
                  for n, a in self.appearances.items()]
        return lines


class ScanReport(_Record):
    """What ``facewatch scan`` returns: one ``VideoReport`` per input file, in input order."""

    videos: list[VideoReport]
