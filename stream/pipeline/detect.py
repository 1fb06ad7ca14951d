"""Detect stage: batches frames across cameras, finds faces, tracks them, gates on quality, cuts face crops.

Batching: up to ``max_batch`` frames or ``max_wait_ms``, whichever comes first. Live: waiting stops as
soon as every camera has a frame in the batch, and ``decisions.LiveBatchCut`` keeps only the newest frame
of each camera (older ones are counted as ``dropped_stale``) cut to what fits in ``live_budget_ms``, with
cameras taking turns, so an overloaded detector drops frames (``dropped_overload``) instead of letting
each batch, and so the latency, grow with the camera count.

Motion gating (``stream.pipeline.motion``, ``motion.enabled``): every frame is looked at on a 320 px copy, but the
detector runs only where and when the gate says: not at all on a still, empty scene (counted as
``detect_skipped``), on the motion and track regions cut from the full-resolution frame (``detect_regions``), or on
the whole frame (``detect_full``); between detections the tracker carries the tracks. The same 320 px copy feeds the
scene-cut check, so each frame is scaled down once.

Before tracking, each processed frame is checked by ``tracker.SceneCuts`` against the camera's previous one: a
scene cut, time going backwards (a looping file, a restarted camera) or a gap over ``tracking.max_gap_s`` ends
every track of the camera (counted as ``track_resets``), so a person seen again after it gets a new track, which
the match stage decides anew.
"""
from __future__ import annotations

import logging
import time

import cv2
import numpy as np

from engines.detections import Detections
from engines.face_model import face_crop
from stream.loaders import pipeline_detector
from stream.pipeline.decisions import LiveBatchCut, crop_gate, face_quality
from stream.pipeline.messages import Faces, Frame
from stream.pipeline.motion import LoadInterval, MotionGate, Plan, small_copy
from stream.pipeline.stage import Stage, StageSpec
from stream.pipeline.tracker import IouTracker, SceneCuts

log = logging.getLogger(__name__)


def frame_time(m: Frame) -> float:
    """The frame's own time: video time in ``scan``, capture time live (what tracks, cuts and the gate count in)."""
    return m.video_time if m.video_time is not None else m.ts_capture


class DetectStage(Stage):
    kind = name = "detect"

    def __init__(self, spec: StageSpec) -> None:
        super().__init__(spec)
        self.detector = pipeline_detector(self.cfg, live=self.live)
        self.tracker = IouTracker(max_age_s=self.cfg.tracking.max_gap_s)
        self.scenes = SceneCuts(self.cfg.tracking.cut_threshold, self.cfg.tracking.max_gap_s)
        self.cameras = max(1, len([c for c in self.cfg.cameras if c.enabled]))
        self.gates: dict[str, MotionGate] = {}
        self.cut = LiveBatchCut(self.cfg.detect_batch.max_batch, self.cfg.detect_batch.live_budget_ms)
        mc = self.cfg.motion
        self.interval = LoadInterval(mc.detect_interval_s, mc.max_detect_interval_s) if self.live else None
        self.inp = self.pull(spec.endpoints["frames"])
        self.out = self.push(spec.endpoints["faces"])

    def gather(self) -> list[Frame]:
        bc = self.cfg.detect_batch
        if not self.live:
            return self.gather_batch(self.inp, (Frame,), bc.max_wait_ms, lambda b: len(b) >= bc.max_batch)
        # No point waiting once every camera (or as many as the budget allows) has a frame here.
        want = min(self.cameras, self.cut.limit())
        batch = self.gather_batch(self.inp, (Frame,), bc.max_wait_ms, lambda b: len({m.camera for m in b}) >= want)
        if not batch:
            return batch
        pending = self.recv_all(self.inp, (Frame,))
        self.metrics.queue_depth = len(pending)
        keep, stale, overload = self.cut.cut(batch + pending, time.monotonic())
        self.metrics.inc("dropped_stale", stale)
        self.metrics.inc("dropped_overload", overload)
        if stale or overload:  # per camera too, for its drop count in the live state
            kept = {id(m) for m in keep}
            for m in batch + pending:
                if id(m) not in kept:
                    self.metrics.inc(f"dropped:{m.camera}")
        return keep

    def loop_once(self) -> None:
        batch = self.gather()
        if not batch:
            return
        t0 = time.perf_counter()
        frames = [m for m in batch if not m.eos and m.image is not None]
        self.metrics.inc("frames_in", len(frames))
        smalls: dict[int, np.ndarray] = {}
        for m in frames:  # per camera, for its processed-fps in the live state
            self.metrics.inc(f"processed:{m.camera}")
            smalls[id(m)] = small_copy(m.image)
            self.new_scene(m, smalls[id(m)])
        results = self.detect(frames, smalls)
        if frames:
            ms = (time.perf_counter() - t0) * 1000
            self.metrics.batches.append(len(frames))
            self.metrics.times_ms.append(ms)
            self.cut.observe(len(frames), ms)
            if self.interval is not None:
                self.metrics.detect_interval_ms = 1000 * self.interval.observe(ms / 1000, time.monotonic())
        for m in batch:
            if m.eos:
                self.tracker.end_camera(m.camera)
                self.scenes.forget(m.camera)
                self.gates.pop(m.camera, None)
                self.send(self.out, Faces(m.camera, m.seq, m.ts_capture, m.video_time, m.frame_index, eos=True), force=True)
                continue
            if id(m) in results:
                self.emit(m, results[id(m)])

    def detect(self, frames: list[Frame], smalls: dict[int, np.ndarray]) -> dict[int, Detections]:
        """Detections of the frames the motion gate says to detect (all of them, whole, when gating is off):
        whole frames batched by shape, regions one call each; the frames it skips get none (their tracks are
        carried by the tracker)."""
        whole: list[Frame] = []
        results: dict[int, Detections] = {}
        for m in frames:
            if not self.cfg.motion.enabled:
                whole.append(m)
                continue
            plan = self.plan(m, smalls[id(m)])
            self.metrics.inc(f"detect_{plan.kind}" if plan.kind != "skip" else "detect_skipped")
            if plan.kind == "full":
                whole.append(m)
            elif plan.kind == "regions":
                results[id(m)] = self.detector.detect_regions(m.image, plan.regions)
        by_shape: dict[tuple, list[Frame]] = {}
        for m in whole:
            by_shape.setdefault(m.image.shape, []).append(m)
        for group in by_shape.values():
            for m, faces in zip(group, self.detector.detect_batch([m.image for m in group])):
                results[id(m)] = faces
        return results

    def plan(self, m: Frame, small: np.ndarray) -> Plan:
        """The motion gate's plan for one frame of its camera (``small``: its ``small_copy``)."""
        gate = self.gates.get(m.camera)
        if gate is None:
            gate = self.gates[m.camera] = MotionGate(self.cfg.motion, self.cfg.motion_mask(m.camera))
        t = frame_time(m)
        return gate.plan(m.image, t, self.tracker.predicted(m.camera, t), small,
                         self.interval.value if self.interval is not None else None)

    def new_scene(self, m: Frame, small: np.ndarray) -> None:
        """End every track of the camera when this frame starts a new scene (every processed frame, faces or not,
        so the next one is compared with this one); the motion gate learns the new scene from scratch."""
        t = frame_time(m)
        why = self.scenes.check(m.camera, small, t, m.source_time)
        if why is not None:
            ended = self.tracker.end_camera(m.camera)
            self.metrics.inc("track_resets")
            if m.camera in self.gates:
                self.gates[m.camera].reset()
            log.debug("camera %s: %s at t=%.3f, %d track(s) ended", m.camera, why, t, ended)

    def emit(self, m: Frame, faces: Detections) -> None:
        """Track every detected face, then pass on the ones good enough to embed. Why track the gated ones too: a
        face that turns away or blurs for a few frames is still where it is, and a track left behind (not updated)
        grows its search area until it takes over another face that walks in nearby; its identity would then be
        carried onto the wrong person (seen on a generated clip: a track named one person re-attached to another
        person's face 270 px away after 0.8 s without a kept detection)."""
        q = self.cfg.quality
        t = frame_time(m)
        all_ids, _ = self.tracker.update(m.camera, faces.boxes, t) if len(faces) else (np.zeros(0, np.int64), None)
        keep = (faces.sizes >= self.cfg.min_face(m.camera)) & (faces.scores >= q.min_det_score)
        crops, sharp = [], []
        exposure = 0
        for i in np.flatnonzero(keep):
            crop = face_crop(m.image, faces.landmarks[i])
            why, s = crop_gate(crop, q.min_sharpness, q.max_clipped)
            if why is not None:
                keep[i] = False
                exposure += why == "exposure"
                continue
            crops.append(crop)
            sharp.append(s)
        gated = int(len(faces) - keep.sum())
        self.metrics.inc("faces_detected", len(faces))
        self.metrics.inc("gated", gated)
        if exposure:
            self.metrics.inc("gated_exposure", exposure)
        if not keep.any():
            return
        f = faces.subset(keep)
        ids = all_ids[keep]
        quality = face_quality(f.scores, f.sizes, np.array(sharp), f.landmarks)
        out = Faces(m.camera, m.seq, m.ts_capture, m.video_time, m.frame_index, gated=gated, boxes=f.boxes,
                    scores=f.scores, landmarks=f.landmarks, track_ids=ids, quality=quality.astype(np.float32),
                    crops=np.stack(crops), image=m.image)
        if self.send(self.out, out):
            self.metrics.inc("faces_out", len(f))
            self.metrics.inc("frames_out")
