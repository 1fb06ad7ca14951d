"""Events: filtered and paged review, export, snapshots, search by face, visitors, and operator feedback.

Feedback changes the gallery, which the running pipeline reloads: "this is X" enrolls the event's face as a
sample of X; "this is NOT X" adds a negative sample, so that face (and faces closer to it than to X's own
samples) stops matching X. The event keeps the verdict for the review page.
"""
from __future__ import annotations

import csv
import io
import json
from typing import Any, Literal

import cv2
import numpy as np
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from engines.face_model import CROP_SIZE
from stream.api.auth import require_token
from stream.api.errors import ApiError
from stream.api.state import ApiState
from stream.api.uploads import main_face, read_image
from stream.api.views import event_json
from stream.records import Event
from stream.store.events import EventFilter, UnknownEventError
from stream.store.gallery import LEGACY_EMBEDDER, GalleryError, normalize_name

router = APIRouter(prefix="/api", tags=["events"], dependencies=[Depends(require_token)])

MAX_EXPORT = 100_000


def api_of(request: Request) -> ApiState:
    return request.app.state.api


def filters(camera: str | None = None, identity: str | None = None,
            kind: Literal["watchlist", "unknown"] | None = None, source: Literal["live", "scan"] | None = None,
            unknown_id: int | None = None, since: float | None = Query(None, description="epoch seconds (capture time)"),
            until: float | None = Query(None, description="epoch seconds (capture time)"),
            min_score: float | None = Query(None, ge=-1, le=1)) -> EventFilter:
    return EventFilter(camera=camera, identity=identity, kind=kind, source=source, unknown_id=unknown_id,
                       since=since, until=until, min_score=min_score)


def get_event(api: ApiState, event_id: int) -> Event:
    try:
        return api.store().get(event_id)
    except UnknownEventError:
        raise ApiError(404, f"no event with id {event_id}") from None


@router.get("/events", summary="Stored events, newest first, filtered and paged")
def list_events(request: Request, flt: EventFilter = Depends(filters), limit: int = Query(50, ge=1, le=500),
                offset: int = Query(0, ge=0)) -> dict[str, Any]:
    evs, total = api_of(request).store().query(flt, limit, offset)
    return {"events": [event_json(e) for e in evs], "total": total, "limit": limit, "offset": offset}


EXPORT_FIELDS = ("id", "ts", "ts_capture", "camera", "kind", "identity", "score", "threshold", "track_id", "latency_ms",
                 "source", "video_file", "video_time", "unknown_id", "feedback", "feedback_identity",
                 "relabel_name", "relabel_score", "relabel_at")


@router.get("/events/export", summary="Export the filtered events as CSV or JSON (no images)")
def export(request: Request, flt: EventFilter = Depends(filters),
           format: Literal["csv", "json"] = "csv") -> Response:  # noqa: A002 - the query parameter's name
    evs, _ = api_of(request).store().query(flt, MAX_EXPORT, 0)
    rows = [{k: e.public()[k] for k in EXPORT_FIELDS} for e in evs]
    if format == "json":
        body, media = json.dumps({"events": rows}, indent=1), "application/json"
    else:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=EXPORT_FIELDS)
        w.writeheader()
        w.writerows(rows)
        body, media = buf.getvalue(), "text/csv"
    return Response(body, media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="facewatch-events.{format}"'})


@router.get("/events/{event_id}", summary="One event")
def one_event(event_id: int, request: Request) -> dict[str, Any]:
    e = get_event(api_of(request), event_id)
    return {**event_json(e), "deliveries": e.deliveries}


def _snapshot(request: Request, event_id: int, which: str) -> FileResponse:
    api = api_of(request)
    e = get_event(api, event_id)
    path = api.snapshot_file(e.chip_path if which == "face" else e.frame_path)
    if path is None:
        raise ApiError(404, f"event {event_id} has no {which} snapshot")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


@router.get("/events/{event_id}/face.jpg", summary="The event's face chip", response_class=FileResponse)
def face(event_id: int, request: Request) -> FileResponse:
    return _snapshot(request, event_id, "face")


@router.get("/events/{event_id}/frame.jpg", summary="The event's full frame", response_class=FileResponse)
def frame(event_id: int, request: Request) -> FileResponse:
    return _snapshot(request, event_id, "frame")


def similar_events(api: ApiState, embedding: np.ndarray, limit: int, exclude: int | None = None) -> list[dict[str, Any]]:
    hits = api.index().search(embedding, k=limit, exclude=exclude)
    by_id = api.store().by_ids(i for i, _ in hits)
    return [{"event": event_json(by_id[i]), "similarity": round(s, 4)} for i, s in hits if i in by_id]


@router.get("/events/{event_id}/similar", summary="Past events of the same face, best first")
def similar(event_id: int, request: Request, limit: int = Query(20, ge=1, le=200)) -> dict[str, Any]:
    api = api_of(request)
    get_event(api, event_id)
    return {"results": similar_events(api, _embedding(api, event_id), limit, exclude=event_id)}


@router.post("/search", summary="Search past events by a face photo (its largest face), best first")
async def search(request: Request, file: UploadFile = File(...), limit: int = Form(20, ge=1, le=200)) -> dict[str, Any]:
    api = api_of(request)
    name, image = await read_image(api, file)

    def work() -> dict[str, Any]:
        f = main_face(api, name, image)
        return {"face": {"box": [round(float(v), 1) for v in f.box], "det_score": round(f.det_score, 4)},
                "results": similar_events(api, f.embedding, limit)}

    return await run_in_threadpool(work)


@router.get("/visitors", summary="Unknown visitors: unknown-face events grouped by face, most recent first")
def visitors(request: Request, limit: int = Query(50, ge=1, le=500)) -> dict[str, Any]:
    api = api_of(request)
    vs = api.store().visitors(limit)
    by_id = api.store().by_ids(v.latest_event_id for v in vs)
    return {"visitors": [{"unknown_id": v.unknown_id, "count": v.count, "first_ts": v.first_ts, "last_ts": v.last_ts,
                          "cameras": v.cameras, "event": event_json(by_id[v.latest_event_id])}
                         for v in vs if v.latest_event_id in by_id]}


class Verdict(BaseModel):
    identity: str | None = Field(None, max_length=200, description="the person; reject defaults to the event's identity")


def _chip_jpeg(api: ApiState, e: Event) -> bytes | None:
    path = api.snapshot_file(e.chip_path)
    if path is None:
        return None
    data = path.read_bytes()
    return data if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None else None


def _subject(api: ApiState, event_id: int, identity: str | None, unnamed: str) -> tuple[Event, str, np.ndarray]:
    """(the event, the normalised name the verdict is about, the event's face) or the ApiError that says why not;
    ``unnamed``: the message when neither the request nor the event names anyone."""
    e = get_event(api, event_id)
    who = identity or e.identity
    if not who:
        raise ApiError(400, f"identity: {unnamed}")
    emb = _embedding(api, event_id)
    try:
        return e, normalize_name(who), emb
    except GalleryError as exc:
        raise ApiError(400, str(exc)) from None


def _embedding(api: ApiState, event_id: int) -> np.ndarray:
    emb = api.store().embedding(event_id)
    if emb is None:
        raise ApiError(409, f"event {event_id} has no stored face embedding (stored by an older version)", code="conflict")
    made_by = get_event(api, event_id).embedder or LEGACY_EMBEDDER
    if made_by != api.cfg.embedder_id:
        raise ApiError(409, f"event {event_id}'s face was embedded by {made_by!r}, the gallery uses "
                       f"{api.cfg.embedder_id!r}", code="conflict")
    return emb


def _crop(api: ApiState, e: Event) -> np.ndarray | None:
    """The event's face snapshot when it is a canonical face crop (events before crops had dlib chips: None)."""
    data = _chip_jpeg(api, e)
    img = None if data is None else cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return img if img is not None and img.shape[:2] == (CROP_SIZE, CROP_SIZE) else None


@router.post("/events/{event_id}/confirm", summary="This event's face is the given person: enroll it as a sample")
def confirm(event_id: int, body: Verdict, request: Request) -> dict[str, Any]:
    api = api_of(request)
    e, name, emb = _subject(api, event_id, body.identity, "say who this is")
    try:
        with api.gallery_writer() as g:
            g.enroll(name, emb[None, :], sources=[f"event:{event_id}"], thumbnail=_chip_jpeg(api, e),
                     crops=[_crop(api, e)])
            samples = dict(g.persons()).get(name, 0)
    except GalleryError as exc:
        raise ApiError(400, str(exc)) from None
    e = api.store().set_feedback(event_id, "confirmed", name)
    return {"person": name, "samples": samples, "event": event_json(e)}


@router.post("/events/{event_id}/reject", summary="This event's face is NOT the given person: a negative sample")
def reject(event_id: int, body: Verdict, request: Request) -> dict[str, Any]:
    api = api_of(request)
    e, who, emb = _subject(api, event_id, body.identity, "this event matched no one; say who it is not")
    try:
        with api.gallery_writer() as g:
            known = {p for p, _ in g.persons()}
            if who not in known:
                raise ApiError(404, f"no person named {who!r} in the gallery")
            negatives = g.add_negative(who, emb, source=f"event:{event_id}", crop=_crop(api, e))
    except GalleryError as exc:
        raise ApiError(400, str(exc)) from None
    e = api.store().set_feedback(event_id, "rejected", who)
    return {"person": who, "negatives": negatives, "event": event_json(e)}
