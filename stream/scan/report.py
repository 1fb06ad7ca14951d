"""Builds the ``ScanReport`` of recorded videos from the match stage's decisions, in video time.

Pure logic (no sockets): the collect stage feeds it decisions; tests can feed it directly. The same alert
rules and cooldown as live apply, with video time as the clock.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from stream.pipeline.decisions import AlertRules, Cooldown
from stream.records import Appearance, ScanEvent, ScanReport, VideoReport


@dataclass
class _Track:
    start: float | None
    end: float | None
    identity: str | None = None
    best_score: float | None = None


@dataclass
class _Video:
    report: VideoReport
    tracks: dict[str, _Track] = field(default_factory=dict)
    ended: bool = False


class ScanReportBuilder:
    """One report per source (``camera name -> file``); complete when every source has ended."""

    def __init__(self, sources: dict[str, str], rules: AlertRules, cooldown: Cooldown, observations: bool = False) -> None:
        self.rules, self.cooldown, self.keep_observations = rules, cooldown, observations
        self.videos = {n: _Video(VideoReport(file=p, camera=n, observations=[] if observations else None))
                       for n, p in sources.items()}

    @property
    def complete(self) -> bool:
        return all(v.ended for v in self.videos.values())

    def source_failed(self, camera: str, detail: str) -> None:
        if camera in self.videos:
            self.videos[camera].report.error = detail

    def end(self, camera: str, frames: int) -> None:
        if camera in self.videos:
            self.videos[camera].report.frames = frames
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
            if v.report.observations is not None:
                v.report.observations.append((frame_index or 0, track_id, box))
            return None
        if kind == "watchlist":
            tr.identity, tr.best_score = identity, score
        if not self.rules.wanted(camera, kind) or not self.cooldown.allow(camera, identity, t):
            return None
        event = ScanEvent(kind=kind, identity=identity, score=round(score, 4), threshold=threshold, video_time=round(t, 3),
                          frame_index=frame_index, track_id=track_id, track_start=track_start, box=box)
        v.report.events.append(event)
        return event

    def build(self) -> ScanReport:
        """The report: per-identity appearances over all tracks, and each track's identity."""
        out = []
        for v in self.videos.values():
            appear: dict[str, Appearance] = {}
            for tr in v.tracks.values():
                if tr.identity is None:
                    continue
                a = appear.get(tr.identity)
                start, end, best = tr.start or 0.0, tr.end or 0.0, tr.best_score or 0.0
                appear[tr.identity] = Appearance(first_seen=start, last_seen=end, best_score=best) if a is None else \
                    Appearance(first_seen=min(a.first_seen, start), last_seen=max(a.last_seen, end),
                               best_score=max(a.best_score, best))
            out.append(v.report.model_copy(deep=True, update={
                "appearances": appear, "track_identity": {k: t.identity for k, t in v.tracks.items()}}))
        return ScanReport(videos=out)
