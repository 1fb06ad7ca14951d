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
DeliveryState = Literal["pending", "delivered", "failed"]
EventSource = Literal["live", "scan"]
Feedback = Literal["confirmed", "rejected"]


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
    latency_ms: float | None = Field(..., description="capture -> alert; None for recorded video (scan --store)")
    box: list[float] | None = None
    chip_path: str | None = None
    frame_path: str | None = None
    source: EventSource = Field("live", description="live camera, or recorded video stored by scan --store")
    video_file: str | None = Field(None, description="recorded video the event was found in (scan --store)")
    video_time: float | None = Field(None, description="seconds into video_file")
    unknown_id: int | None = Field(None, description="visitor group of an unknown face: the same id for repeat visits")
    feedback: Feedback | None = Field(None, description="operator feedback: confirmed (is feedback_identity) or rejected (is not)")
    feedback_identity: str | None = Field(None, description="the identity the feedback is about")
    rule: str | None = Field(None, description="how the track was decided: mean-of-track-vs-template (its score is the "
                             "track's mean embedding against the person's template) or votes (best single comparison)")
    chips_used: int | None = Field(None, description="embeddings of the track the decision rests on")
    embedder: str | None = Field(None, description="profile id of the vectors that decided it (engines/profiles.py)")
    relabel_name: str | None = Field(None, description="who this unknown face was found to be after they were enrolled "
                                     "(facewatch events relabel); kind, identity and score keep the original decision")
    relabel_score: float | None = Field(None, description="the face's score against relabel_name when it was relabelled")
    relabel_at: float | None = Field(None, description="wall-clock time of the relabelling")
    relabel_by: str | None = Field(None, description="who relabelled it: cli or api")
    deliveries: dict[str, DeliveryState] | None = Field(
        None, description="sink -> delivery state, filled by the event store; None = not looked up")

    #: What sinks send: no delivery bookkeeping, no images (``events --json`` adds ``deliveries``).
    PUBLIC_FIELDS: ClassVar[tuple[str, ...]] = (
        "id", "ts", "ts_capture", "camera", "kind", "identity", "score", "threshold", "track_id", "latency_ms", "box",
        "chip_path", "frame_path", "source", "video_file", "video_time", "unknown_id", "feedback", "feedback_identity", "rule", "chips_used",
        "embedder", "relabel_name", "relabel_score", "relabel_at", "relabel_by")

    def public(self) -> dict:
        return self.model_dump(include=set(self.PUBLIC_FIELDS))

    def console_line(self) -> str:
        who = self.identity or ("UNKNOWN face" if self.unknown_id is None else f"UNKNOWN visitor #{self.unknown_id}")
        if self.source == "scan":
            where = f"in {self.video_file} at t={self.video_time or 0:.2f}s"
            latency = ""
        else:
            where = f"on camera {self.camera} at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.ts_capture))}"
            latency = f" latency {self.latency_ms:.0f} ms" if self.latency_ms is not None else ""
        return (f"ALERT {self.kind}: {who} {where} score {self.score:.4f} "
                f"(threshold {self.threshold:.4f}) track {self.track_id}{latency} "
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
    """The result for one video file, and how much of the file it covers.

    ``status``: "complete" (the file read to its end), "partial" (decoding stopped before the frame count the
    container announces, or frames failed to decode: events and appearances cover only what was read) or
    "failed" (not opened, or no frame decoded); ``reason`` says why in one line, None when complete. Why
    counts and a status, not an error string: a truncated file used to look like a clean success.
    """

    file: str
    camera: str
    status: Literal["complete", "partial", "failed"]
    reason: str | None = Field(None, description="why the file is partial or failed (one line); None when complete")
    frames_expected: int | None = Field(None, ge=0, description="the container's frame count (or duration x fps); "
                                                                "None when the container does not say")
    frames_decoded: int = Field(0, ge=0, description="frames decoded from the file")
    frames_processed: int = Field(0, ge=0, description="frames sent through the pipeline (every --every-th)")
    decode_errors: int = Field(0, ge=0, description="frames that failed to decode")
    events: list[ScanEvent] = Field(default_factory=list)
    appearances: dict[str, Appearance] = Field(default_factory=dict)
    track_identity: dict[str, str | None] = Field(default_factory=dict, description="track id -> identity")
    observations: list[tuple[int, int, list[float]]] | None = Field(
        None, description="(frame index, track id, box) of every face, kept only for --annotate")

    def model_post_init(self, _context: object) -> None:
        """A report that is not complete must say why, and a complete one must not carry a reason."""
        if (self.status == "complete") != (self.reason is None):
            raise ValueError("reason must be given exactly when status is not complete")

    def human_lines(self) -> list[str]:
        expected = "?" if self.frames_expected is None else str(self.frames_expected)
        head = (f"{self.file}: {self.status if self.status == 'complete' else self.status.upper()}, "
                f"{self.frames_decoded} of {expected} frames decoded, {self.frames_processed} processed")
        head += f", {self.decode_errors} decode errors" if self.decode_errors else ""
        lines = [head + (f": {self.reason}" if self.reason else "")]
        lines += [f"  t={e.video_time:.2f}s frame {e.frame_index}: {e.identity or 'UNKNOWN'} score {e.score:.4f}"
                  for e in self.events]
        lines += [f"  {n}: first {a.first_seen:.2f}s last {a.last_seen:.2f}s best {a.best_score:.4f}"
                  for n, a in self.appearances.items()]
        return lines


class ScanReport(_Record):
    """What ``facewatch scan`` returns: one ``VideoReport`` per input file, in input order."""

    videos: list[VideoReport]
