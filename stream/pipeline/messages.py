"""Every message that crosses a ZeroMQ socket, and its wire format.

Wire format: multipart ``[header, *arrays]``. ``header`` is UTF-8 JSON with ``"t"`` (the type), the
message fields, and ``"arrays"``: one ``[name, dtype, shape]`` per following frame. Arrays travel as raw
buffers (zero-copy on send). Every message carries the camera and the capture timestamp so the alert
stage can measure capture->alert latency. ``decode`` validates everything and raises ``MessageError``
on anything malformed; receivers log and skip such messages.

Flow (each stage reads one kind and writes one kind):
capture -> Frame -> detect -> Faces -> embed -> Embeddings -> match -> Decision -> alert.
Capture also sends CameraStatus to alert (live) and, in recorded mode, a SourceSummary per file straight to the
last stage; every stage sends Heartbeat to the supervisor.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np


class MessageError(ValueError):
    """A message that cannot be decoded; the receiver logs it and goes on."""


_DTYPES = {"uint8", "float32", "int64", "bool"}


@dataclass
class Message:
    TYPE: ClassVar[str] = ""
    ARRAYS: ClassVar[tuple[str, ...]] = ()

    def check(self) -> None:
        """Field checks beyond the constructor's, run by ``decode``; raise ``MessageError``."""

    def encode(self) -> list:
        head: dict[str, Any] = {"t": self.TYPE, "arrays": []}
        frames: list = []
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in self.ARRAYS:
                if v is None:
                    continue
                a = np.ascontiguousarray(v)
                head["arrays"].append([f.name, str(a.dtype), list(a.shape)])
                frames.append(a)
            else:
                head[f.name] = v
        return [json.dumps(head, separators=(",", ":")).encode(), *frames]


@dataclass
class Frame(Message):
    """One captured frame (BGR). ``video_time``/``frame_index`` are set for recorded sources; ``source_time``
    (the stream position by the source's own clock, seconds) for live ones: it going backwards means the source
    looped or restarted, and detect ends the camera's tracks."""

    TYPE: ClassVar[str] = "frame"
    ARRAYS: ClassVar[tuple[str, ...]] = ("image",)
    camera: str
    seq: int
    ts_capture: float
    video_time: float | None = None
    frame_index: int | None = None
    eos: bool = False  # end of a recorded source: stages flush and pass it on
    image: np.ndarray | None = None
    source_time: float | None = None

    def check(self) -> None:
        t = self.source_time
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float))):
            raise MessageError("frame: source_time must be a number or null")


@dataclass
class Faces(Message):
    """Faces of one frame that passed the quality gate, with tracks and their canonical face crops.

    A crop (``engines.face_model``) is what any embedder cuts its own chip from, so nothing here knows an
    embedder's chip size or embedding size."""

    TYPE: ClassVar[str] = "faces"
    ARRAYS: ClassVar[tuple[str, ...]] = ("boxes", "scores", "landmarks", "track_ids", "quality", "crops", "image")
    camera: str
    seq: int
    ts_capture: float
    video_time: float | None = None
    frame_index: int | None = None
    eos: bool = False
    gated: int = 0
    boxes: np.ndarray | None = None  # [N, 4] float32
    scores: np.ndarray | None = None  # [N]
    landmarks: np.ndarray | None = None  # [N, 5, 2]
    track_ids: np.ndarray | None = None  # [N] int64
    quality: np.ndarray | None = None  # [N] float32, higher is better
    crops: np.ndarray | None = None  # [N, S, S, 3] uint8 BGR canonical face crops
    image: np.ndarray | None = None  # the frame, for snapshots


@dataclass
class Embeddings(Faces):
    """Faces plus an embedding for those the embed stage chose (``embedded`` mask)."""

    TYPE: ClassVar[str] = "embeddings"
    ARRAYS: ClassVar[tuple[str, ...]] = Faces.ARRAYS + ("embedded", "embeddings")
    embedded: np.ndarray | None = None  # [N] bool
    embeddings: np.ndarray | None = None  # [N, D] float32 (rows of non-embedded faces are zero)


@dataclass
class Decision(Message):
    """A track's identity decision (alert=True when new), or, in recorded mode, every observation."""

    TYPE: ClassVar[str] = "decision"
    ARRAYS: ClassVar[tuple[str, ...]] = ("chip", "image", "embedding")
    camera: str
    ts_capture: float
    track_id: int
    identity: str | None
    score: float
    threshold: float
    kind: str  # "watchlist" | "unknown" | "observation" | "eos"
    box: list[float] = field(default_factory=list)
    video_time: float | None = None
    frame_index: int | None = None
    track_start: float | None = None  # video time (recorded) or capture time (live) the track began
    rule: str = ""  # how it was decided: engines.aggregate.RULE or "votes"
    chips_used: int = 0  # embeddings of the track the decision rests on
    chip: np.ndarray | None = None  # the face: canonical crop, BGR
    image: np.ndarray | None = None
    embedding: np.ndarray | None = None  # [D] float32: the track's face (mean of its embeddings), for search by face


@dataclass
class CameraStatus(Message):
    TYPE: ClassVar[str] = "status"
    camera: str
    ts_capture: float
    online: bool
    detail: str = ""


@dataclass
class SourceSummary(Message):
    """What capture made of one recorded file (``facewatch scan``), sent straight to the last stage before the
    file's end-of-stream, so the report says how much of the file was read, not only what was found in it.

    ``failure`` is why the file could not be read at all (None when it was opened); ``frames_expected`` is the
    container's frame count (or duration x fps), None when the container does not say.
    """

    TYPE: ClassVar[str] = "source"
    camera: str
    ts_capture: float
    frames_expected: int | None = None
    frames_decoded: int = 0
    frames_processed: int = 0
    decode_errors: int = 0
    failure: str | None = None

    def check(self) -> None:
        counts = {"frames_decoded": self.frames_decoded, "frames_processed": self.frames_processed,
                  "decode_errors": self.decode_errors}
        if self.frames_expected is not None:
            counts["frames_expected"] = self.frames_expected
        for name, v in counts.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise MessageError(f"source: {name} must be a count (an integer >= 0), got {v!r}")
        if self.failure is not None and not isinstance(self.failure, str):
            raise MessageError("source: failure must be a string or null")


@dataclass
class Heartbeat(Message):
    TYPE: ClassVar[str] = "heartbeat"
    stage: str
    pid: int
    ts_capture: float
    metrics: dict = field(default_factory=dict)
    camera: str = ""


TYPES: dict[str, type[Message]] = {c.TYPE: c for c in (Frame, Faces, Embeddings, Decision, CameraStatus, SourceSummary,
                                                       Heartbeat)}


def decode(parts: list, expect: tuple[type[Message], ...] | None = None) -> Message:
    """Parse a multipart message; ``MessageError`` when it is malformed or of an unexpected type."""
    if not parts:
        raise MessageError("empty message")
    try:
        head = json.loads(bytes(parts[0]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise MessageError(f"header is not JSON: {exc}") from None
    if not isinstance(head, dict) or head.get("t") not in TYPES:
        raise MessageError(f"unknown message type {head.get('t') if isinstance(head, dict) else head!r}")
    cls = TYPES[head.pop("t")]
    if expect and cls not in expect:
        raise MessageError(f"unexpected message type {cls.TYPE!r}")
    specs = head.pop("arrays", [])
    if not isinstance(specs, list) or len(specs) != len(parts) - 1:
        raise MessageError(f"{cls.TYPE}: header announces {len(specs) if isinstance(specs, list) else '?'} arrays, got {len(parts) - 1}")
    kwargs = dict(head)
    for spec, buf in zip(specs, parts[1:]):
        try:
            name, dtype, shape = spec
            if name not in cls.ARRAYS or dtype not in _DTYPES:
                raise ValueError(f"array {name!r} of {dtype!r} not allowed")
            kwargs[name] = np.frombuffer(buf, dtype=dtype).reshape(shape)
        except (ValueError, TypeError) as exc:
            raise MessageError(f"{cls.TYPE}: bad array: {exc}") from None
    try:
        msg = cls(**kwargs)
    except TypeError as exc:
        raise MessageError(f"{cls.TYPE}: bad fields: {exc}") from None
    if not isinstance(getattr(msg, "camera", ""), str) or not isinstance(msg.ts_capture, (int, float)):
        raise MessageError(f"{cls.TYPE}: camera must be a string and ts_capture a number")
    msg.check()
    return msg
