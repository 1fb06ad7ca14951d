"""Embed stage: batches face crops across cameras; embeds each track a bounded number of times.

A track gets at most ``max_embeddings_per_track`` embeddings, spent on its better chips
(``decisions.EmbeddingBudget``). Faces that are not embedded are still passed on (without an embedding)
so recorded-mode reports see every observation.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from stream.loaders import pipeline_embedder
from stream.pipeline.decisions import EmbeddingBudget
from stream.pipeline.messages import Embeddings, Faces
from stream.pipeline.stage import Stage, StageSpec

LIVE_MAX_AGE_S = 1.0  # live faces older than this are stale: dropped and counted
LIVE_IDLE_GAP_MS = 2  # live: stop waiting for more chips once the input has been quiet this long
TRACK_FORGET_S = 60.0


class EmbedStage(Stage):
    kind = name = "embed"

    def __init__(self, spec: StageSpec) -> None:
        super().__init__(spec)
        self.embedder = pipeline_embedder(self.cfg, live=self.live)
        self.budget = EmbeddingBudget(self.cfg.matching.max_embeddings_per_track, forget_s=TRACK_FORGET_S,
                                      min_gap_s=self.cfg.embed_gap_s)
        self.inp = self.pull(spec.endpoints["faces"])
        self.out = self.push(spec.endpoints["embeddings"])

    def gather(self) -> list[Faces]:
        bc = self.cfg.embed_batch
        # Live: detect sends a batch's faces back to back, so a quiet input means the batch is all here.
        batch = self.gather_batch(self.inp, (Faces,), bc.max_wait_ms,
                                  lambda b: sum(0 if m.crops is None else len(m.crops) for m in b) >= bc.max_batch,
                                  idle_gap_ms=LIVE_IDLE_GAP_MS if self.live else None)
        if self.live:
            now = time.time()
            fresh = [m for m in batch if m.eos or now - m.ts_capture <= LIVE_MAX_AGE_S]
            self.metrics.inc("dropped_stale", len(batch) - len(fresh))
            batch = fresh
        return batch

    def loop_once(self) -> None:
        batch = self.gather()
        if not batch:
            return
        t0 = time.perf_counter()
        faces = [m for m in batch if not m.eos and m.crops is not None]
        # One budget decision over the whole batch, so a track's best chips in it are the ones embedded.
        flat = self.budget.choose([t for m in faces for t in m.track_ids.tolist()],
                                  [q for m in faces for q in m.quality.tolist()], time.time(),
                                  [m.video_time if m.video_time is not None else m.ts_capture
                                   for m in faces for _ in m.track_ids.tolist()])
        masks = np.split(flat, np.cumsum([len(m.track_ids) for m in faces])[:-1]) if faces else []
        dim = self.embedder.dim
        crops = [m.crops[mask] for m, mask in zip(faces, masks) if mask.any()]
        emb = self.embedder.embed_crops(np.concatenate(crops)) if crops else np.zeros((0, dim), np.float32)
        if crops:
            self.metrics.batches.append(len(emb))
            self.metrics.times_ms.append((time.perf_counter() - t0) * 1000)
        self.metrics.inc("faces_in", sum(len(m.crops) for m in faces))
        self.metrics.inc("faces_embedded", len(emb))
        k = 0
        results = {}
        for m, mask in zip(faces, masks):
            e = np.zeros((len(mask), dim), np.float32)
            e[mask] = emb[k : k + mask.sum()]
            k += int(mask.sum())
            results[id(m)] = (mask, e)
        for m in batch:
            same = {f.name: getattr(m, f.name) for f in dataclasses.fields(Faces)}
            if m.eos:
                self.send(self.out, Embeddings(**same), force=True)
                continue
            mask, e = results[id(m)]
            if self.live and not mask.any():
                continue  # nothing new to decide on
            self.send(self.out, Embeddings(**same, embedded=mask, embeddings=e))
        if len(self.budget.tracks) > 10_000 or time.monotonic() % 10 < 0.05:
            self.budget.forget(time.time())
