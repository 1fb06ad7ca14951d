"""Embed stage: batches aligned chips across cameras; embeds each track a bounded number of times.

A track gets at most ``max_embeddings_per_track`` embeddings, taken from its better chips (a chip is
embedded only while it is at least 80 % as good as the track's best so far). Faces that are not embedded
are still passed on (without an embedding) so recorded-mode reports see every observation.
"""
from __future__ import annotations

import time

import numpy as np

from engines.embedder import EMBEDDING_DIM
from stream.config import Config
from stream.loaders import pipeline_embedder
from stream.messages import Embeddings, Faces
from stream.stage import Stage, StageSpec

LIVE_MAX_AGE_S = 1.0  # live faces older than this are stale: dropped and counted
LIVE_IDLE_GAP_MS = 2  # live: stop waiting for more chips once the input has been quiet this long
TRACK_FORGET_S = 60.0


class EmbedStage(Stage):
    name = "embed"

    def __init__(self, spec: StageSpec) -> None:
        super().__init__(spec)
        self.cfg = Config.model_validate(spec.config)
        self.embedder = pipeline_embedder(self.cfg)
        self.tracks: dict[int, list[float]] = {}  # track id -> [count, best quality, last seen]
        self.inp = self.pull(spec.endpoints["faces"])
        self.out = self.push(spec.endpoints["embeddings"])

    def gather(self) -> list[Faces]:
        bc = self.cfg.embed_batch
        # Live: detect sends a batch's faces back to back, so a quiet input means the batch is all here.
        batch = self.gather_batch(self.inp, (Faces,), bc.max_wait_ms,
                                  lambda b: sum(0 if m.chips is None else len(m.chips) for m in b) >= bc.max_batch,
                                  idle_gap_ms=LIVE_IDLE_GAP_MS if self.live else None)
        if self.live:
            now = time.time()
            fresh = [m for m in batch if m.eos or now - m.ts_capture <= LIVE_MAX_AGE_S]
            self.metrics.inc("dropped_stale", len(batch) - len(fresh))
            batch = fresh
        return batch

    def choose(self, m: Faces) -> np.ndarray:
        """Which faces of ``m`` to embed (bounded, best chips per track)."""
        limit = self.cfg.matching.max_embeddings_per_track
        mask = np.zeros(len(m.track_ids), bool)
        now = time.time()
        for i, (tid, q) in enumerate(zip(m.track_ids.tolist(), m.quality.tolist())):
            st = self.tracks.setdefault(tid, [0, 0.0, now])
            st[2] = now
            if st[0] < limit and q >= 0.8 * st[1]:
                mask[i] = True
                st[0] += 1
                st[1] = max(st[1], q)
        return mask

    def loop_once(self) -> None:
        batch = self.gather()
        if not batch:
            return
        t0 = time.perf_counter()
        faces = [m for m in batch if not m.eos and m.chips is not None]
        masks = [self.choose(m) for m in faces]
        chips = [m.chips[mask] for m, mask in zip(faces, masks) if mask.any()]
        emb = self.embedder.embed(np.concatenate(chips)) if chips else np.zeros((0, EMBEDDING_DIM), np.float32)
        if chips:
            self.metrics.batches.append(len(emb))
            self.metrics.times_ms.append((time.perf_counter() - t0) * 1000)
        self.metrics.inc("faces_in", sum(len(m.chips) for m in faces))
        self.metrics.inc("faces_embedded", len(emb))
        k = 0
        results = {}
        for m, mask in zip(faces, masks):
            e = np.zeros((len(mask), EMBEDDING_DIM), np.float32)
            e[mask] = emb[k : k + mask.sum()]
            k += int(mask.sum())
            results[id(m)] = (mask, e)
        for m in batch:
            fields = {f: getattr(m, f) for f in ("camera", "seq", "ts_capture", "video_time", "frame_index", "eos", "gated",
                                                 "boxes", "scores", "landmarks", "track_ids", "quality", "chips", "image")}
            if m.eos:
                self.send(self.out, Embeddings(**fields), force=True)
                continue
            mask, e = results[id(m)]
            if self.live and not mask.any():
                continue  # nothing new to decide on
            self.send(self.out, Embeddings(**fields, embedded=mask, embeddings=e))
        if len(self.tracks) > 10_000 or time.monotonic() % 10 < 0.05:
            now = time.time()
            self.tracks = {t: s for t, s in self.tracks.items() if now - s[2] < TRACK_FORGET_S}
