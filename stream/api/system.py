"""Health, readiness, the effective config (secrets redacted), the threshold and where it came from, metrics,
and the login that sets the token cookie for the web UI."""
from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from stream.api.auth import COOKIE, presented, require_token, token_ok
from stream.api.errors import ApiError
from stream.api.state import ApiState
from stream.pipeline.capture import redact
from stream.store.events import EventStoreError
from stream.store.gallery import GalleryError
from stream.store.live import STALE_AFTER_S

public = APIRouter(prefix="/api", tags=["session"])
router = APIRouter(tags=["system"], dependencies=[Depends(require_token)])

SECRET = "***"


def state(request: Request) -> ApiState:
    return request.app.state.api


class Login(BaseModel):
    token: str


@public.post("/login", status_code=204, summary="Check the API token and set it as an HttpOnly cookie (web UI)")
def login(body: Login, request: Request, response: Response) -> Response:
    api = state(request)
    if not token_ok(api.token, body.token):
        raise ApiError(401, "wrong API token")
    response.status_code = 204
    if api.token:
        response.set_cookie(COOKIE, body.token, httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


@public.get("/session", summary="Whether this server needs a token and whether this client presents a valid one")
def session(request: Request) -> dict[str, bool]:
    api = state(request)
    return {"auth_required": api.token is not None, "authenticated": token_ok(api.token, presented(request))}


@router.get("/api/health", summary="Liveness: the server answers")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/api/ready", summary="Readiness: the event store and the gallery open; 503 when not")
def ready(request: Request, response: Response) -> dict[str, Any]:
    api = state(request)
    checks: dict[str, str] = {}
    try:
        api.store().last_id()
        checks["event_store"] = "ok"
    except EventStoreError as exc:
        checks["event_store"] = str(exc)
    try:
        g = api.gallery_reader()
        checks["gallery"] = "ok" if g is not None else f"no gallery at {api.gallery_dir} (enroll someone first)"
    except (GalleryError, OSError) as exc:
        checks["gallery"] = str(exc)
    _, written = api.live.read_cameras()
    if written is None:
        checks["pipeline"] = "no live state (is facewatch run running?)"
    elif time.time() - written > STALE_AFTER_S:
        checks["pipeline"] = f"live state is {time.time() - written:.0f} s old (is facewatch run still running?)"
    else:
        checks["pipeline"] = "ok"
    ok = checks["event_store"] == "ok" and checks["gallery"] == "ok"
    response.status_code = 200 if ok else 503
    return {"ready": ok, "checks": checks}


def redacted_config(api: ApiState) -> dict[str, Any]:
    """The effective config as JSON with every secret replaced: the token, passwords in camera and webhook URLs."""
    conf = api.cfg.model_dump(mode="json")
    if conf["api"].get("token"):
        conf["api"]["token"] = SECRET
    for cam in conf["cameras"]:
        if isinstance(cam.get("source"), str):
            cam["source"] = redact(cam["source"])
    hook = conf["alerts"]["sinks"].get("webhook")
    if hook:
        hook["url"] = redact(hook["url"].split("?", 1)[0]) + ("?" + SECRET if "?" in hook["url"] else "")
    return conf


@router.get("/api/config", summary="The effective configuration, secrets redacted")
def config(request: Request) -> dict[str, Any]:
    return redacted_config(state(request))


@router.get("/api/threshold", summary="The match threshold and where it came from (calibrated FAR, gallery size)")
def threshold(request: Request) -> dict[str, Any]:
    api = state(request)
    c = api.cfg.calibration
    g = api.gallery_reader()
    return {"threshold": c.threshold, "far": c.far, "far_upper": c.far_upper, "impostors": c.impostors,
            "gallery_size": c.gallery_size, "enrolled": len(g.persons()) if g is not None else 0, "source": c.data,
            "profile": c.profile, "embedder": c.embedder, "rule": api.cfg.recognition.rule,
            "track_threshold": c.track_threshold, "track_far_upper": c.track_far_upper,
            "track_impostors": c.track_impostors, "votes_threshold": api.cfg.votes_threshold,
            "votes_far_upper": c.votes_far_upper,
            "votes_impostors": c.votes_impostors}


@router.get("/api/openapi.json", include_in_schema=False)
def openapi(request: Request) -> dict[str, Any]:
    """The OpenAPI description, behind the token like every route (FastAPI's own would be public)."""
    return request.app.openapi()


@router.get("/api/docs", include_in_schema=False)
def docs(request: Request) -> Response:
    from fastapi.openapi.docs import get_swagger_ui_html

    return get_swagger_ui_html(openapi_url="/api/openapi.json", title="facewatch API")


@router.get("/metrics", summary="Prometheus metrics of this server", include_in_schema=True)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
