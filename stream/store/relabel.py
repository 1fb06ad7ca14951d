"""Past unknown faces of a person enrolled since: which events to offer for relabelling, and relabelling them.

The one rule (the CLI, the API and the hint after an enrolment all use it): a past ``unknown`` event is a candidate
for NAME when the gallery as it is now would identify its stored face as NAME at the per-photo threshold in force
(``cfg.threshold``), the way ``identify`` does (``Gallery.search``): the face's best cosine with one of NAME's
samples reaches the threshold, no other enrolled person scores higher, and none of NAME's negative samples vetoes
it. The stored face is the track's mean embedding; only faces made by the gallery's embedder are compared. Events
that already carry operator feedback or a relabel are not offered.

Relabelling writes ``relabel_name``/``relabel_score``/``relabel_at``/``relabel_by`` beside the original decision
(``EventStore.relabel``): ``kind``, ``identity`` and ``score`` keep what was decided at the time. Nothing changes in
the gallery: the events' faces are not enrolled (the "Is …" feedback of the web UI does that for one event).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stream.store.events import EventStore, RelabelError
from stream.store.gallery import LEGACY_EMBEDDER, Gallery, normalize_name

CHUNK = 10_000  # events compared per step: 10,000 x 128 floats is 5 MB


@dataclass(frozen=True)
class RelabelCandidate:
    event_id: int
    score: float  # the face's best cosine with one of the person's samples


def candidates(store: EventStore, gallery: Gallery, name: str, threshold: float) -> list[RelabelCandidate]:
    """The past unknown events that look like ``name`` (see the module doc), best score first.
    ``GalleryError`` when ``name`` is not enrolled."""
    name = normalize_name(name)
    mine = gallery.sample_vectors(name)
    out: list[RelabelCandidate] = []
    after = 0
    while rows := store.unknown_faces(after, CHUNK):
        after = rows[-1][0]
        usable = [(i, v) for i, made_by, v in rows
                  if (made_by or LEGACY_EMBEDDER) == gallery.embedder and v.shape == (gallery.dim,)]
        if not usable:
            continue
        ids = np.array([i for i, _ in usable], np.int64)
        vecs = np.stack([v for _, v in usable]).astype(np.float32)
        near = (vecs @ mine.T).max(axis=1) >= threshold - 1e-4  # exact first pass; the search below decides
        if not near.any():
            continue
        for event_id, c in zip(ids[near], gallery.search(vecs[near])):
            if c.accepted(threshold) == name:
                out.append(RelabelCandidate(int(event_id), round(float(c.score), 6)))
    return sorted(out, key=lambda c: (-c.score, c.event_id))


def _why_not(store: EventStore, gallery: Gallery, name: str, threshold: float, event_id: int) -> str:
    """Why an event that is relabellable in itself is not a candidate for ``name``."""
    e = store.get(event_id)
    made_by = e.embedder or LEGACY_EMBEDDER
    if made_by != gallery.embedder:
        return f"event {event_id}'s face was embedded by {made_by!r}, the gallery holds {gallery.embedder!r}"
    emb = store.embedding(event_id)
    assert emb is not None  # relabel_problem said it has one
    score = float((gallery.sample_vectors(name) @ emb).max())
    c = gallery.search(emb[None])[0]
    other = f"; it is closer to {c.identity!r} ({c.score:.4f})" if c.identity not in (None, name) else ""
    return (f"event {event_id}'s face does not match {name!r} at the threshold {threshold:.4f} "
            f"(score {score:.4f}{other})")


def relabel(store: EventStore, gallery: Gallery, name: str, threshold: float, event_ids: list[int] | None,
            by: str) -> dict:
    """Relabel the given events (None: every candidate) as ``name``, all or none; returns ``{"person",
    "relabelled": [ids], "already": [ids], "events": [Event]}``. An event that is not a candidate is refused
    (``RelabelError`` saying why; ``UnknownEventError`` for an id the store does not hold); one already relabelled
    as ``name`` is counted in ``already`` and left as it is."""
    name = normalize_name(name)
    offered = {c.event_id: c.score for c in candidates(store, gallery, name, threshold)}
    if event_ids is None:
        chosen, already = offered, []
    else:
        chosen, already = {}, []
        for event_id in dict.fromkeys(event_ids):
            if event_id in offered:
                chosen[event_id] = offered[event_id]
                continue
            why = store.relabel_problem(event_id, name)
            if why is not None:
                raise RelabelError(why)
            if store.get(event_id).relabel_name == name:
                already.append(event_id)
                continue
            raise RelabelError(_why_not(store, gallery, name, threshold, event_id))
    events = store.relabel(chosen, name, by) if chosen else []
    return {"person": name, "relabelled": list(chosen), "already": already, "events": events}
