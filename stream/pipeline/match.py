"""Match stage: 1:N decisions per track, and gallery hot reload.

``recognition.rule: track``: each track keeps a ``decisions.TrackTemplate``; once it has ``votes``
embeddings, the quality-weighted mean of its best ones is compared with every person's template (mean of their
samples) at the calibration's track threshold, after every new embedding. ``votes`` (the default): each embedding is
searched on its own in the HNSW index of every sample (``decisions.TrackVote``), and ``votes`` of them must name
the same person at the calibration's votes threshold (``Config.votes_threshold``). Each track is decided once per
identity; the alert stage applies the cooldown.
The gallery is re-read when its generation changes on disk, so enrolling while running takes effect.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from engines.aggregate import RULE
from stream.pipeline.decisions import TrackTemplate, TrackVote
from stream.pipeline.messages import Decision, Embeddings
from stream.pipeline.stage import Stage, StageSpec
from stream.store.gallery import DB_FILE, Gallery, GalleryError

log = logging.getLogger(__name__)
TRACK_FORGET_S = 120.0


class MatchStage(Stage):
    kind = name = "match"

    def __init__(self, spec: StageSpec) -> None:
        super().__init__(spec)
        self.gallery_dir = Path(spec.options.get("gallery") or self.cfg.resolve(self.cfg.matching.gallery))
        self.gallery: Gallery | None = None
        self._next_check = 0.0
        self.tracks: dict[int, TrackVote | TrackTemplate] = {}
        self.track_vecs: dict[int, list[np.ndarray]] = {}  # the embeddings of each track, for its event's template
        self.inp = self.pull(spec.endpoints["embeddings"])
        self.out = self.push(spec.endpoints["decisions"])
        self.needed = min(self.cfg.matching.votes, self.cfg.matching.max_embeddings_per_track)
        self.rule = self.cfg.recognition.rule
        cal = self.cfg.calibration
        if self.rule == "track" and cal.track_threshold is None:  # preflight refuses this; never guess a threshold
            raise RuntimeError("recognition.rule is track but the calibration has no track_threshold")
        self.track_threshold = cal.track_threshold if cal.track_threshold is not None else cal.threshold
        self.decision_threshold = self.track_threshold if self.rule == "track" else self.cfg.votes_threshold
        self.check_gallery()

    def check_gallery(self) -> None:
        """Open the gallery when it appears; reload it when its generation changed."""
        self._next_check = time.monotonic() + self.cfg.matching.reload_interval_s
        try:
            if self.gallery is None:
                if (self.gallery_dir / DB_FILE).is_file():
                    self.gallery = Gallery(self.gallery_dir, readonly=True, **self.cfg.gallery_args())
                    log.info("gallery loaded: %d persons", len(self.gallery.persons()))
            elif self.gallery.generation != self.gallery.loaded_generation:
                self.gallery.reload()
                self.metrics.inc("gallery_reloads")
                log.info("gallery reloaded: %d persons", len(self.gallery.persons()))
        except (GalleryError, OSError, Exception) as exc:  # a gallery mid-write: try again next time
            log.warning("gallery not usable yet: %s", exc)
        self.metrics.counters["gallery_samples"] = len(self.gallery) if self.gallery else 0

    def loop_once(self) -> None:
        if time.monotonic() >= self._next_check:
            self.check_gallery()
        batch = [m for m in [self.recv(self.inp, 200, (Embeddings,))] if m is not None]
        if not batch:
            return
        batch += self.recv_all(self.inp, (Embeddings,), limit=256)
        self.metrics.queue_depth = len(batch) - 1
        t0 = time.perf_counter()
        for m in batch:
            if m.eos:
                self.send(self.out, Decision(m.camera, m.ts_capture, 0, None, 0.0, 0.0, "eos",
                                             video_time=m.video_time, frame_index=m.frame_index), force=True)
                continue
            self.handle(m)
        self.metrics.times_ms.append((time.perf_counter() - t0) * 1000)
        self.metrics.batches.append(len(batch))
        if len(self.tracks) > 5000:
            now = time.time()
            self.tracks = {t: v for t, v in self.tracks.items() if now - v.last_seen < TRACK_FORGET_S}
            self.track_vecs = {t: v for t, v in self.track_vecs.items() if t in self.tracks}

    def handle(self, m: Embeddings) -> None:
        idx = np.flatnonzero(m.embedded) if m.embedded is not None else np.zeros(0, int)
        self.metrics.inc("faces_in", len(m.track_ids))
        self.metrics.inc("faces_matched", len(idx))
        if self.rule == "track":
            self.handle_track_rule(m, set(idx.tolist()))
        else:
            self.handle_votes(m, idx)

    def handle_track_rule(self, m: Embeddings, embedded: set[int]) -> None:
        """``recognition.rule: track``: each new embedding updates the track's mean, which is compared with every
        person's template at the track threshold (``decisions.TrackTemplate``)."""
        thr = self.track_threshold
        t = m.video_time if m.video_time is not None else m.ts_capture
        for i, tid in enumerate(m.track_ids.tolist()):
            tr = self.tracks.setdefault(tid, TrackTemplate(self.needed, self.cfg.matching.max_embeddings_per_track, t))
            tr.last_seen = time.time()
            box = [round(float(v), 1) for v in m.boxes[i]]
            if i in embedded and tr.add(m.embeddings[i], float(m.quality[i])) and tr.ready:
                vec = tr.vector()
                c = self.gallery.search_templates(vec[None])[0] if self.gallery else None
                score = c.score if c is not None else -1.0
                log.debug("track %s: %s %.4f over %d looks", tid, c.identity if c else None, score, len(tr.embeddings))
                decided = tr.observe(c.accepted(thr) if c is not None else None, score)
                if decided is not None:
                    kind, ident, sc = decided
                    self.decide(m, i, tid, ident, sc, kind, tr.start, box, vec, len(tr.embeddings))
            if not self.live:
                ident = tr.current
                self.send(self.out, Decision(m.camera, m.ts_capture, tid, ident, tr.best.get(ident, 0.0) if ident else 0.0,
                                             thr, "observation", box, m.video_time, m.frame_index, tr.start,
                                             rule=RULE, chips_used=len(tr.embeddings)))

    def handle_votes(self, m: Embeddings, idx: np.ndarray) -> None:
        """``recognition.rule: votes``: each embedding is searched on its own (HNSW over every sample) at the
        votes threshold and ``matching.votes`` of them must name the same person (``decisions.TrackVote``)."""
        thr = self.decision_threshold  # Config.votes_threshold, read once in __init__
        cands = {}
        if len(idx):
            found = (self.gallery.search(m.embeddings[idx], k=self.cfg.matching.top_k) if self.gallery
                     else [None] * len(idx))
            cands = dict(zip(idx.tolist(), found))
        t = m.video_time if m.video_time is not None else m.ts_capture
        for i, tid in enumerate(m.track_ids.tolist()):
            tr = self.tracks.setdefault(tid, TrackVote(needed=self.needed, start=t))
            tr.last_seen = time.time()
            box = [round(float(v), 1) for v in m.boxes[i]]
            if i in cands:
                vecs = self.track_vecs.setdefault(tid, [])
                if len(vecs) < self.cfg.matching.max_embeddings_per_track:
                    vecs.append(np.asarray(m.embeddings[i], np.float32))
                c = cands[i]
                log.debug("track %s: %s %.4f", tid, c.identity if c else None, c.score if c else -1)
                tr.add(c.accepted(thr) if c is not None else None, c.score if c is not None else -1.0)
                decided = tr.decide()
                if decided is not None:
                    kind, ident, score = decided
                    self.decide(m, i, tid, ident, score, kind, tr.start, box, self.template(tid),
                                len(self.track_vecs.get(tid, [])))
            if not self.live:
                ident = tr.identity()
                self.send(self.out, Decision(m.camera, m.ts_capture, tid, ident, tr.best.get(ident, 0.0) if ident else 0.0,
                                             thr, "observation", box, m.video_time, m.frame_index, tr.start,
                                             rule="votes"))

    def template(self, tid: int) -> np.ndarray | None:
        """The track's face as one vector: the normalised mean of its embeddings, steadier than any single frame
        for finding the same face in other events."""
        vecs = self.track_vecs.get(tid)
        if not vecs:
            return None
        mean = np.mean(vecs, axis=0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)

    def decide(self, m: Embeddings, i: int, tid: int, ident: str | None, score: float, kind: str, start: float,
               box: list[float], face: np.ndarray | None, chips_used: int) -> None:
        self.metrics.inc(f"decisions_{kind}")
        d = Decision(m.camera, m.ts_capture, tid, ident, float(score), self.decision_threshold, kind, box,
                     m.video_time, m.frame_index, start, rule=RULE if self.rule == "track" else "votes",
                     chips_used=chips_used, chip=m.crops[i], image=m.image, embedding=face)
        self.send(self.out, d, force=True)  # decisions are rare and must not be lost
