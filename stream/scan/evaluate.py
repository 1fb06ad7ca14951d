"""``facewatch eval video``: the real recorded-video pipeline over labelled clips, judged pass by pass.

Each label file (schema: ``stream.eval.video_clips``) names a clip, who is enrolled from which photos, and every
appearance (who, when, optionally where). For each recognition profile a gallery is enrolled from the label
files' enrolment photos with the profile's own models (label files with the same enrolment share one), and for
each decision rule the clips go through ``scan_videos``, the very pipeline ``facewatch scan`` runs (capture ->
detect -> embed -> match -> collect, real processes, every frame), with the thresholds of the calibration in force
for that profile (``matching.calibration`` when it is for that profile, else the shipped one). Nothing is tuned on
the clips.

Judging. The scan reports every processed face's track and box (``observations``) and every identity alert
with its track. A track belongs to the labelled appearance whose head box holds the centre of most of its
detections (appearances without ``boxes``: by time alone); an alert belongs to the appearance of its track.
Per enrolled appearance: **right** (alerted with its own name, and no other), **wrong** (some alert on it named
someone else: a false accept, even when its own name came too), **missed** (no identity alert); time to first
correct alert is from the appearance's start. Per stranger appearance: **false alarm** if any identity alert was
raised on it, else **quiet**. Identity alerts on tracks that belong to no appearance are counted as
**unlabelled** alerts. The alert cooldown (``alerts.cooldown_s``) is set to 0 for the runs: it is a delivery
policy that would hide a second pass of one person within its window, and each pass is judged on its own.
"""
from __future__ import annotations

import bisect
import math
import shutil
import tempfile
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engines.profiles import PROFILE_NAMES
from stream.config import SHIPPED_CALIBRATIONS, Config
from stream.eval.photos import EvalError
from stream.eval.video_clips import LabelledAppearance, LoadedLabels, VideoLabelError, load_labels
from stream.records import VideoReport

PROFILES = PROFILE_NAMES
RULES = ("track", "votes")
CENTRE_SLACK = 0.1  # a detection's centre may lie this share of the head box outside it


class VideoEvalError(EvalError):
    """Input the video evaluation cannot use (one line, naming the file and field); the CLI exits 2."""


# ------------------------------------------------------------------------------------------ inputs
@dataclass
class Clip:
    """A label file, checked, with what the clip's container says."""

    labels: LoadedLabels
    fps: float  # the container's
    frames: int | None
    duration_s: float | None

    @property
    def path(self) -> Path:
        return self.labels.clip


def label_files(labels: list[str | Path], directory: str | Path | None) -> list[Path]:
    """The label files given, and every ``*.json`` in ``directory`` (sorted); at least one."""
    from stream.media.files import regular_file_problem

    out = [Path(p) for p in labels]
    if directory is not None:
        d = Path(directory)
        if not d.is_dir():
            raise VideoEvalError(f"--dir {d}: {regular_file_problem(d) or 'not a directory'}"
                                 if not d.exists() else f"--dir {d}: not a directory")
        found = sorted(p for p in d.iterdir() if p.suffix.lower() == ".json")
        if not found:
            raise VideoEvalError(f"--dir {d}: no label files (*.json) in it")
        out += found
    if not out:
        raise VideoEvalError("no label files: give --labels FILE or --dir DIR")
    seen: set[Path] = set()
    return [p for p in out if not (p.resolve() in seen or seen.add(p.resolve()))]


def check_clip(loaded: LoadedLabels) -> Clip:
    """Open the clip the way capture does, decode its first frame, and check the labels fit it (fps, times)."""
    from stream.pipeline.capture import VideoError, frames_expected, open_recorded

    import cv2

    where = f"{loaded.path}: clip: {loaded.clip}"
    try:
        cap = open_recorded(str(loaded.clip))
    except VideoError as exc:
        raise VideoEvalError(f"{where}: {exc}") from None
    try:
        ok, frame = cap.read()
        if not ok or frame is None:
            raise VideoEvalError(f"{where}: no frame could be decoded (not a video, or corrupt)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        frames = frames_expected(cap)
    finally:
        cap.release()
    want = loaded.labels.fps
    if not (math.isfinite(fps) and fps > 0):
        fps = want
    elif abs(fps - want) > 0.01 * want:
        raise VideoEvalError(f"{loaded.path}: fps: the labels say {want:g}, the clip's container says {fps:g}")
    duration = frames / fps if frames else None
    if duration is not None:
        for i, a in enumerate(loaded.appearances):
            if a.start_s >= duration:
                raise VideoEvalError(f"{loaded.path}: appearances[{i}].start_s: {a.start_s:g} is after the clip's end "
                                     f"({duration:.2f} s)")
    return Clip(loaded, fps, frames, duration)


def load_clips(paths: list[Path]) -> list[Clip]:
    """Every label file loaded and its clip checked, before any model loads: bad input fails in a second."""
    return [check_clip(load_labels(p)) for p in paths]


def run_config(cfg: Config, profile: str, rule: str) -> tuple[Config, str]:
    """The config of one run (``profile``, ``rule``, cooldown 0), and where its calibration comes from."""
    from stream.preflight import rule_problems

    data = cfg.model_dump()
    data["recognition"] = {**data["recognition"], "profile": profile, "rule": rule}
    data["alerts"] = {**data["alerts"], "cooldown_s": 0.0}
    cal = cfg.matching.calibration
    source = "matching.calibration"
    if cal is None or cal.profile != profile:
        data["matching"] = {**data["matching"], "calibration": None}
        source = "shipped"
        if profile not in SHIPPED_CALIBRATIONS:
            raise VideoEvalError(f"--profile {profile}: no calibration for it (none ships with this version and "
                                 f"matching.calibration is {'not set' if cal is None else 'for ' + cal.profile}); run "
                                 f"facewatch calibrate --write with recognition.profile: {profile}")
    out = Config.model_validate(data)
    problems = rule_problems(out)
    if problems:
        raise VideoEvalError(f"--profile {profile} --rule {rule}: {problems[0]}")
    return out, source


# ------------------------------------------------------------------------------------------ results
@dataclass
class AppearanceResult:
    labels: str
    clip: str
    index: int  # in the label file's appearances
    identity: str
    enrolled: bool
    start_s: float
    end_s: float
    verdict: str  # enrolled: right | wrong | missed; stranger: quiet | false_alarm
    named: list[str] = field(default_factory=list)  # identities alerted on it, first alert first
    first_correct_s: float | None = None  # from start_s to the first alert naming it right
    tracks: int = 0  # tracks that belong to it (0: never detected)


@dataclass
class RunResult:
    """One (profile, rule) over every clip."""

    profile: str
    rule: str
    embedder: str
    threshold: float  # the one the rule decides at (track_threshold for track, Config.votes_threshold for votes)
    far: float  # the calibration's claim
    calibration: str  # matching.calibration | shipped
    calibration_data: str
    appearances: list[AppearanceResult] = field(default_factory=list)
    unlabelled_alerts: list[dict[str, Any]] = field(default_factory=list)
    videos: list[dict[str, Any]] = field(default_factory=list)  # file, status, reason
    enrolment: list[dict[str, Any]] = field(default_factory=list)  # per gallery: enrolled photos, skipped ones

    @property
    def complete(self) -> bool:
        return all(v["status"] == "complete" for v in self.videos)

    def summary(self) -> dict[str, Any]:
        enr = [a for a in self.appearances if a.enrolled]
        strangers = [a for a in self.appearances if not a.enrolled]
        n = Counter(a.verdict for a in self.appearances)
        ttfa = sorted(a.first_correct_s for a in enr if a.first_correct_s is not None)

        def share(k: int, of: int) -> float | None:
            return k / of if of else None

        return {"profile": self.profile, "rule": self.rule, "threshold": self.threshold, "far": self.far,
                "calibration": self.calibration,
                "enrolled_passes": len(enr), "named_right": n["right"], "wrong_name": n["wrong"], "missed": n["missed"],
                "right_rate": share(n["right"], len(enr)), "wrong_rate": share(n["wrong"], len(enr)),
                "miss_rate": share(n["missed"], len(enr)),
                "not_detected": sum(1 for a in self.appearances if a.tracks == 0),
                "stranger_passes": len(strangers), "stranger_false_alarms": n["false_alarm"],
                "false_alarm_rate": share(n["false_alarm"], len(strangers)),
                "unlabelled_alerts": len(self.unlabelled_alerts),
                "first_alert_median_s": float(np.median(ttfa)) if ttfa else None,
                "first_alert_mean_s": float(np.mean(ttfa)) if ttfa else None,
                "first_alert_max_s": ttfa[-1] if ttfa else None,
                "complete": self.complete}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["summary"] = self.summary()
        return d


@dataclass
class VideoEvalReport:
    labels: list[str]
    clips: int
    runs: list[RunResult]

    @property
    def complete(self) -> bool:
        return all(r.complete for r in self.runs)

    def to_dict(self) -> dict[str, Any]:
        return {"labels": self.labels, "clips": self.clips, "complete": self.complete,
                "table": [r.summary() for r in self.runs], "runs": [r.to_dict() for r in self.runs]}

    def table_lines(self) -> list[str]:
        return table_lines([r.summary() for r in self.runs])


def _count(k: int, of: int) -> str:
    return f"{k}/{of} ({k / of:.0%})" if of else "-"


def table_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The one table: a row per (profile, rule)."""
    head = ["profile", "rule", "threshold", "named right", "wrong name", "missed", "stranger false alarms",
            "unlabelled alerts", "first correct alert (median / max)"]
    body = []
    for s in rows:
        ttfa = ("-" if s["first_alert_median_s"] is None
                else f"{s['first_alert_median_s']:.2f} s / {s['first_alert_max_s']:.2f} s")
        body.append([s["profile"], s["rule"], f"{s['threshold']:.4f}", _count(s["named_right"], s["enrolled_passes"]),
                     _count(s["wrong_name"], s["enrolled_passes"]), _count(s["missed"], s["enrolled_passes"]),
                     _count(s["stranger_false_alarms"], s["stranger_passes"]), str(s["unlabelled_alerts"]), ttfa])
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return [fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in body]


# ------------------------------------------------------------------------------------------ judging
def _box_at(a: LabelledAppearance, t: float, tol: float) -> tuple[float, ...] | None:
    """The labelled head box of ``a`` nearest ``t`` (within ``tol``), None when it has none there."""
    boxes = a.boxes or []
    i = bisect.bisect_left([b[0] for b in boxes], t)
    best = min((boxes[j] for j in (i - 1, i) if 0 <= j < len(boxes)), key=lambda b: abs(b[0] - t), default=None)
    return best[1:] if best is not None and abs(best[0] - t) <= tol else None


def _holds(a: LabelledAppearance, t: float, box: list[float], tol: float) -> bool:
    if not (a.start_s - tol <= t <= a.end_s + tol):
        return False
    if a.boxes is None:
        return True
    b = _box_at(a, t, tol)
    if b is None or len(box) != 4:
        return False
    x1, y1, x2, y2 = b
    sx, sy = (x2 - x1) * CENTRE_SLACK, (y2 - y1) * CENTRE_SLACK
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return x1 - sx <= cx <= x2 + sx and y1 - sy <= cy <= y2 + sy


def assign_tracks(apps: list[LabelledAppearance], obs: list[tuple[float, int, list[float]]], tol: float) -> dict[int, int]:
    """Track id -> index of the appearance that holds most of its detections (ties: the earlier one); tracks
    that no appearance holds are left out."""
    votes: dict[int, Counter] = defaultdict(Counter)
    for t, tid, box in obs:
        held = [i for i, a in enumerate(apps) if _holds(a, t, box, tol)]
        for i in held:
            votes[tid][i] += 1.0 / len(held)
    return {tid: min(c, key=lambda i: (-c[i], i)) for tid, c in votes.items() if c}


def judge(clip: Clip, video: VideoReport) -> tuple[list[AppearanceResult], list[dict[str, Any]]]:
    """Each labelled appearance's verdict in one scanned clip, and the identity alerts that fit none."""
    apps = clip.labels.appearances
    fps = clip.fps
    tol = 1.5 / fps
    obs = [(fi / fps, tid, box) for fi, tid, box in (video.observations or [])]
    track_of = assign_tracks(apps, obs, tol)
    alerts = [e for e in video.events if e.kind == "watchlist" and e.identity is not None]
    by_app: dict[int, list] = defaultdict(list)
    unlabelled = []
    for e in sorted(alerts, key=lambda e: e.video_time):
        i = track_of.get(e.track_id)
        if i is None:  # a track without observations (should not happen): place the alert by its own box and time
            i = next((k for k, a in enumerate(apps) if _holds(a, e.video_time, e.box, tol)), None)
        if i is None:
            unlabelled.append({"labels": str(clip.labels.path), "clip": str(clip.path), "identity": e.identity,
                               "video_time": e.video_time, "track_id": e.track_id, "score": e.score})
        else:
            by_app[i].append(e)
    tracks_of = Counter(track_of.values())
    out = []
    for i, a in enumerate(apps):
        named = list(dict.fromkeys(e.identity for e in by_app[i]))
        right = [e.video_time for e in by_app[i] if e.identity == a.identity]
        if a.enrolled:
            verdict = "wrong" if any(n != a.identity for n in named) else ("right" if right else "missed")
        else:
            verdict = "false_alarm" if named else "quiet"
        out.append(AppearanceResult(str(clip.labels.path), str(clip.path), i, a.identity, a.enrolled, a.start_s, a.end_s,
                                    verdict, named, round(max(0.0, right[0] - a.start_s), 3) if right and a.enrolled
                                    else None, tracks_of.get(i, 0)))
    return out, unlabelled


# ------------------------------------------------------------------------------------------ running
def enrolment_groups(clips: list[Clip]) -> list[tuple[dict[str, list[Path]], list[Clip]]]:
    """Clips grouped by their enrolment (the same people from the same photos share one gallery), in input order."""
    groups: dict[tuple, tuple[dict[str, list[Path]], list[Clip]]] = {}
    for c in clips:
        key = tuple(sorted((n, tuple(str(p.resolve()) for p in ps)) for n, ps in c.labels.enroll.items()))
        groups.setdefault(key, (c.labels.enroll, []))[1].append(c)
    return list(groups.values())


def enrol(cfg: Config, analyzer, enroll: dict[str, list[Path]], directory: Path, where: str) -> dict[str, Any]:
    """A gallery of ``enroll`` made with ``analyzer`` (the profile's models): the largest face of each photo; a
    photo without a face is skipped and reported, a person left with none is an error."""
    from engines.analyzer import largest_face
    from stream.media.images import ImageError, load_image
    from stream.store.gallery import Gallery

    enrolled, skipped = {}, []
    with Gallery(directory, **cfg.gallery_args()) as gal:
        for name, photos in enroll.items():
            embs, crops, sources = [], [], []
            for p in photos:
                try:
                    faces = analyzer.analyze(load_image(p))
                except ImageError as exc:
                    raise VideoEvalError(f"{where}: enroll.{name}: {exc}") from None
                if not faces:
                    skipped.append({"identity": name, "photo": str(p), "reason": "no face found"})
                    continue
                f = largest_face(faces)
                embs.append(f.embedding)
                crops.append(f.crop)
                sources.append(p.name)
            if not embs:
                raise VideoEvalError(f"{where}: enroll.{name}: none of its {len(photos)} photo(s) shows a face the "
                                     "detector finds")
            gal.enroll(name, np.stack(embs), sources, crops=crops)
            enrolled[name] = len(embs)
    return {"labels": where, "enrolled": enrolled, "skipped": skipped}


def evaluate_video(cfg: Config, clips: list[Clip], profiles: list[str], rules: list[str], *, progress: bool = False,
                   note: Callable[[str], None] = lambda _m: None, timeout_s: float | None = None) -> VideoEvalReport:
    """Every (profile, rule) over every clip: galleries enrolled per profile, the real pipeline per rule."""
    from engines.model_store import ModelStore
    from stream.loaders import photo_analyzer
    from stream.scan.run import scan_videos

    configs = {(p, r): run_config(cfg, p, r) for p in profiles for r in rules}  # every refusal before any work
    groups = enrolment_groups(clips)
    runs = []
    work = Path(tempfile.mkdtemp(prefix="facewatch-evalvideo-"))
    try:
        for p in profiles:
            pcfg = configs[(p, rules[0])][0]
            ModelStore(pcfg.home).prepare(p, pcfg.detector.model, fetch=False)  # the models once here (a missing FaceNet says so)
            analyzer = photo_analyzer(pcfg)
            galleries = []
            for g, (enroll, members) in enumerate(groups):
                d = work / f"{p}-gallery-{g}"
                galleries.append((d, enrol(pcfg, analyzer, enroll, d, str(members[0].labels.path)), members))
            del analyzer
            for r in rules:
                rcfg, source = configs[(p, r)]
                cal = rcfg.calibration
                threshold = cal.track_threshold if r == "track" else rcfg.votes_threshold
                run = RunResult(p, r, rcfg.embedder_id, float(threshold), cal.far, source, cal.data)
                for d, receipt, members in galleries:
                    run.enrolment.append(receipt)
                    note(f"eval video: {p}/{r}: scanning {len(members)} clip(s)")
                    rep = scan_videos(rcfg, [str(c.path) for c in members], 1, str(d), observations=True,
                                      progress=progress, timeout_s=timeout_s)
                    for c, v in zip(members, rep.videos):
                        run.videos.append({"labels": str(c.labels.path), "file": v.file, "status": v.status,
                                           "reason": v.reason, "frames_processed": v.frames_processed})
                        apps, unlabelled = judge(c, v)
                        run.appearances += apps
                        run.unlabelled_alerts += unlabelled
                runs.append(run)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return VideoEvalReport([str(c.labels.path) for c in clips], len(clips), runs)


__all__ = ["VideoEvalError", "VideoLabelError", "Clip", "label_files", "load_clips", "run_config", "judge",
           "evaluate_video", "VideoEvalReport", "RunResult", "AppearanceResult", "table_lines", "PROFILES", "RULES"]
