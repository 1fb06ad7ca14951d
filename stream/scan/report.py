"""Builds the ``ScanReport`` of recorded videos from the match stage's decisions, in video time.

Pure logic (no sockets): the collect stage feeds it decisions and each file's ``SourceSummary``; tests can feed
it directly. The same alert rules and cooldown as live apply, with video time as the clock. Each file's
status (complete / partial / failed) comes from ``video_status``, so a truncated or unreadable file is never
reported as a success.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from stream.pipeline.decisions import AlertRules, Cooldown
from stream.pipeline.messages import SourceSummary
from stream.records import Appearance, ScanEvent, ScanReport, VideoReport

Status = Literal["complete", "partial", "failed"]
SHORTFALL_SHARE = 0.01  # frames a container's count may overstate: 1 % (at least 1 frame), as estimates do
NOT_READ = "the scan ended before this file was read"


def allowed_shortfall(frames_expected: int) -> int:
    """How many frames fewer than announced still count as the whole file: container counts are often
    duration x fps estimates, off by a frame or so."""
    return max(1, int(frames_expected * SHORTFALL_SHARE))


def video_status(frames_expected: int | None, frames_decoded: int, decode_errors: int,
                 failure: str | None) -> tuple[Status, str | None]:
    """(status, reason) of one file: failed = not opened or no frame decoded; partial = decoding stopped early
    (beyond ``allowed_shortfall``) or frames failed to decode; complete otherwise (reason None)."""
    if failure:
        return "failed", failure
    if frames_decoded == 0:
        of = f" of the {frames_expected} the container announces" if frames_expected else ""
        return "failed", f"no frame could be decoded{of} (corrupt or truncated video)"
    problems = []
    if frames_expected is not None and frames_decoded < frames_expected - allowed_shortfall(frames_expected):
        problems.append(f"decoding stopped after {frames_decoded} of the {frames_expected} frames the container "
                        "announces (truncated or damaged video)")
    if decode_errors:
        problems.append(f"{decode_errors} frame(s) failed to decode")
    if problems:
        return "partial", "; ".join(problems)
    return "complete", None


@dataclass
class _Track:
    start: float | None
    end: float | None
    identity: str | None = None
    best_score: float | None = None


@dataclass
class _Video:
    file: str
    events: list[ScanEvent] = field(default_factory=list)
    observations: list[tuple[int, int, list[float]]] | None = None
    tracks: dict[str, _Track] = field(default_factory=dict)
    source: SourceSummary | None = None  # what capture read of the file
    ended: bool = False  # its end-of-stream went through every stage


class ScanReportBuilder:
    """One report per source (``camera name -> file``); complete when every source has ended and its
    ``SourceSummary`` has arrived (they travel by different paths, in either order)."""

    def __init__(self, sources: dict[str, str], rules: AlertRules, cooldown: Cooldown, observations: bool = False) -> None:
        self.rules, self.cooldown = rules, cooldown
        self.videos = {n: _Video(file=p, observations=[] if observations else None) for n, p in sources.items()}

    @property
    def complete(self) -> bool:
        return all(v.ended and v.source is not None for v in self.videos.values())

    def source(self, summary: SourceSummary) -> None:
        """What capture read of a file (frames expected, decoded, processed, decode errors, or why not at all)."""
        if summary.camera in self.videos:
            self.videos[summary.camera].source = summary

    def end(self, camera: str) -> None:
        """The file's end-of-stream: every decision about it has arrived."""
        if camera in self.videos:
            self.videos[camera].ended = True

    def decision(self, camera: str, kind: str, track_id: int, identity: str | None, score: float, threshold: float,
                 video_time: float | None, frame_index: int | None, track_start: float | None,
                 box: list[float]) -> ScanEvent | None:
        """Account for one decision ("observation", "watchlist" or "unknown"); the event it raised, if any."""
        v = self.videos.get(camera)
        if v is None:
            return None
        t = video_time or 0.0
        tr = v.tracks.setdefault(str(track_id), _Track(start=track_start, end=video_time))
        tr.end = max(tr.end or 0.0, t)
        if kind == "observation":
            if v.observations is not None:
                v.observations.append((frame_index or 0, track_id, box))
            return None
        if kind == "watchlist":
            tr.identity, tr.best_score = identity, score
        if not self.rules.wanted(camera, kind) or not self.cooldown.allow(camera, identity, t):
            return None
        event = ScanEvent(kind=kind, identity=identity, score=round(score, 4), threshold=threshold, video_time=round(t, 3),
                          frame_index=frame_index, track_id=track_id, track_start=track_start, box=box)
        v.events.append(event)
        return event

    def build(self) -> ScanReport:
        """The report: each file's status and counts, per-identity appearances over all tracks, each track's
        identity. A file whose summary never arrived is reported failed, not clean."""
        out = []
        for camera, v in self.videos.items():
            appear: dict[str, Appearance] = {}
            for tr in v.tracks.values():
                if tr.identity is None:
                    continue
                a = appear.get(tr.identity)
                start, end, best = tr.start or 0.0, tr.end or 0.0, tr.best_score or 0.0
                appear[tr.identity] = Appearance(first_seen=start, last_seen=end, best_score=best) if a is None else \
                    Appearance(first_seen=min(a.first_seen, start), last_seen=max(a.last_seen, end),
                               best_score=max(a.best_score, best))
            src = v.source
            if src is None:
                status, reason, counts = "failed", NOT_READ, {}
            else:
                status, reason = video_status(src.frames_expected, src.frames_decoded, src.decode_errors, src.failure)
                counts = {"frames_expected": src.frames_expected, "frames_decoded": src.frames_decoded,
                          "frames_processed": src.frames_processed, "decode_errors": src.decode_errors}
            out.append(VideoReport(
                file=v.file, camera=camera, status=status, reason=reason, **counts, events=list(v.events),
                appearances=appear, track_identity={k: t.identity for k, t in v.tracks.items()},
                observations=None if v.observations is None else list(v.observations)))
        return ScanReport(videos=out)
