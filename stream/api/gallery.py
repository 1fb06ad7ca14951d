"""The gallery from the web: persons with thumbnails, enroll by upload (each photo with its own verdict), add
samples, rename, remove. Writes go through ``stream.store.gallery`` like the CLI's, so the same names are
refused the same way, and the running pipeline reloads the change."""
from __future__ import annotations

import logging
from typing import Annotated, Any

import cv2
import numpy as np
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from stream.api.auth import require_token
from stream.api.errors import ApiError
from stream.api.state import ApiState
from stream.api.uploads import faces_of, read_image
from stream.api.views import event_json
from stream.store.relabel import candidates, relabel as apply_relabel
from stream.store.events import EventStoreError, RelabelError, UnknownEventError
from stream.store.gallery import Gallery, GalleryError, normalize_name

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/gallery", tags=["gallery"], dependencies=[Depends(require_token)])


def api_of(request: Request) -> ApiState:
    return request.app.state.api


def person_url(name: str) -> str:
    from urllib.parse import quote

    return f"/api/gallery/{quote(name, safe='')}/thumbnail.jpg"


@router.get("", summary="Enrolled persons with sample and negative-sample counts and thumbnails")
def persons(request: Request) -> dict[str, Any]:
    g = api_of(request).gallery_reader()
    if g is None:
        return {"persons": [], "exists": False}
    return {"exists": True, "persons": [
        {"name": p["name"], "samples": p["samples"], "negatives": p["negatives"],
         "thumbnail_url": person_url(p["name"]) if p["has_thumbnail"] else None} for p in g.person_info()]}


@router.get("/{name}/thumbnail.jpg", summary="A person's face thumbnail", response_class=Response)
def thumbnail(name: str, request: Request) -> Response:
    g = api_of(request).gallery_reader()
    try:
        jpeg = g.thumbnail(name) if g is not None else None
    except GalleryError:
        jpeg = None
    if jpeg is None:
        raise ApiError(404, f"no thumbnail for {name!r}")
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})


def _chip_jpeg(crop_bgr: np.ndarray) -> bytes | None:
    """The thumbnail: the face's canonical crop as a JPEG."""
    ok, buf = cv2.imencode(".jpg", crop_bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return buf.tobytes() if ok else None


async def _enroll(api: ApiState, name: str, files: list[UploadFile], *, new_person: bool) -> dict[str, Any]:
    """Each photo gets its own verdict; the accepted ones are enrolled in one transaction."""
    try:
        name = normalize_name(name)
    except GalleryError as exc:
        raise ApiError(400, str(exc)) from None
    if not files:
        raise ApiError(400, "files: upload at least one photo")
    if len(files) > api.cfg.api.max_files:
        raise ApiError(413, f"files: at most {api.cfg.api.max_files} photos per upload (api.max_files)")
    results, embs, sources, crops, thumb = [], [], [], [], None
    for f in files:
        try:
            fname, image = await read_image(api, f)
        except ApiError as exc:
            if exc.status == 413 and "api.max_upload_mb" not in exc.message:
                raise
            results.append({"file": f.filename or "upload", "status": "rejected", "reason": exc.message})
            continue
        faces = await run_in_threadpool(faces_of, api, image)
        if len(faces) != 1:
            why = "no face found" if not faces else f"{len(faces)} faces found; use a photo of this person alone"
            results.append({"file": fname, "status": "rejected", "reason": why})
            continue
        embs.append(faces[0].embedding)
        crops.append(faces[0].crop)
        sources.append(f"upload:{fname}")
        thumb = thumb or _chip_jpeg(faces[0].crop)
        results.append({"file": fname, "status": "enrolled", "reason": None})
    if not embs:
        raise ApiError(422, f"{name}: no photo could be enrolled", code="no_face", results=results)
    def write() -> int:
        try:
            with api.gallery_writer() as g:
                if new_person is False and name not in dict(g.persons()):
                    raise ApiError(404, f"no person named {name!r} in the gallery")
                g.enroll(name, np.stack(embs), sources=sources, thumbnail=thumb, crops=crops)
                return dict(g.persons()).get(name, 0), _relabel_count(api, g, name)
        except GalleryError as exc:
            raise ApiError(400, str(exc)) from None

    samples, matches = await run_in_threadpool(write)
    return {"person": name, "samples": samples, "results": results, "relabel_candidates": matches}


def _relabel_count(api: ApiState, g: Gallery, name: str) -> int | None:
    """How many past unknown events the gallery now identifies as ``name`` (None: the event store is unusable;
    the enrolment stands either way)."""
    try:
        return len(candidates(api.store(), g, name, api.cfg.threshold))
    except EventStoreError as exc:
        log.warning("past events not searched for %r: %s", name, exc)
        return None


@router.post("", summary="Enroll a person from uploaded photos (each photo gets its own verdict)")
async def enroll(request: Request, name: str = Form(..., max_length=200),
                 files: list[UploadFile] = File(...)) -> dict[str, Any]:
    return await _enroll(api_of(request), name, files, new_person=True)


@router.post("/{name}/samples", summary="Add photos of an enrolled person")
async def add_samples(name: str, request: Request, files: list[UploadFile] = File(...)) -> dict[str, Any]:
    return await _enroll(api_of(request), name, files, new_person=False)


class Rename(BaseModel):
    name: str = Field(..., max_length=200)


@router.patch("/{name}", summary="Rename a person (samples, negatives and thumbnail follow)")
def rename(name: str, body: Rename, request: Request) -> dict[str, Any]:
    api = api_of(request)
    try:
        with api.gallery_writer() as g:
            if normalize_name(name) not in dict(g.persons()):
                raise ApiError(404, f"no person named {name!r} in the gallery")
            samples = g.rename(name, body.name)
            new = normalize_name(body.name)
    except GalleryError as exc:
        raise ApiError(409 if "already" in str(exc) else 400, str(exc)) from None
    return {"person": new, "samples": samples}


@router.delete("/{name}", summary="Remove a person with all their samples")
def remove(name: str, request: Request) -> dict[str, Any]:
    api = api_of(request)
    try:
        with api.gallery_writer() as g:
            if normalize_name(name) not in dict(g.persons()):
                raise ApiError(404, f"no person named {name!r} in the gallery")
            n = g.remove(name)
    except GalleryError as exc:
        raise ApiError(400, str(exc)) from None
    return {"removed": normalize_name(name), "samples": n}


def _enrolled(api: ApiState, name: str) -> tuple[Gallery, str]:
    """(this thread's gallery, the normalised name) of an enrolled person, or 400/404."""
    try:
        name = normalize_name(name)
    except GalleryError as exc:
        raise ApiError(400, str(exc)) from None
    g = api.gallery_reader()
    if g is None or name not in dict(g.persons()):
        raise ApiError(404, f"no person named {name!r} in the gallery")
    return g, name


@router.get("/{name}/relabel-candidates",
            summary="Past unknown-face events the gallery now identifies as this person, best score first")
def relabel_candidates(name: str, request: Request, limit: int = Query(200, ge=1, le=1000)) -> dict[str, Any]:
    api = api_of(request)
    g, name = _enrolled(api, name)
    found = candidates(api.store(), g, name, api.cfg.threshold)
    by_id = api.store().by_ids(c.event_id for c in found[:limit])
    return {"person": name, "threshold": api.cfg.threshold, "total": len(found),
            "candidates": [{"event": event_json(by_id[c.event_id]), "score": c.score}
                           for c in found[:limit] if c.event_id in by_id]}


class Relabel(BaseModel):
    event_ids: list[Annotated[int, Field(ge=1, le=2**62)]] = Field(..., min_length=1, max_length=10_000,
                                                                   description="candidate events to relabel")


@router.post("/{name}/relabel", summary="Relabel candidate unknown-face events as this person (originals kept)")
def relabel(name: str, body: Relabel, request: Request) -> dict[str, Any]:
    api = api_of(request)
    g, name = _enrolled(api, name)
    try:
        out = apply_relabel(api.store(), g, name, api.cfg.threshold, body.event_ids, by="api")
    except UnknownEventError as exc:
        raise ApiError(404, str(exc).rsplit(": ", 1)[-1]) from None
    except RelabelError as exc:
        raise ApiError(409, str(exc), code="conflict") from None
    return {"person": name, "relabelled": out["relabelled"], "already": out["already"],
            "events": [event_json(e) for e in out["events"]]}
