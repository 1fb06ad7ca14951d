"""Cameras: configured cameras with the running pipeline's live state, and each one's latest frame."""
from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse

from stream.api.auth import require_token
from stream.api.errors import ApiError
from stream.api.state import ApiState
from stream.store.live import STALE_AFTER_S

router = APIRouter(prefix="/api/cameras", tags=["cameras"], dependencies=[Depends(require_token)])


def camera_states(api: ApiState) -> list[dict[str, Any]]:
    """Each configured camera: online (None when unknown: no pipeline state, or a stale one), detail, fps in and
    processed, drops, last frame time and URL."""
    live, written = api.live.read_cameras()
    stale = written is None or time.time() - written > STALE_AFTER_S
    statuses = api.store().latest_statuses()
    out = []
    for cam in api.cfg.cameras:
        if not cam.enabled:
            continue
        st = live.get(cam.name, {})
        last = statuses.get(cam.name, {})
        frame = api.live.frame_path(cam.name)
        try:
            frame_ts: float | None = frame.stat().st_mtime
        except OSError:
            frame_ts = None
        if stale:
            detail = ("pipeline not running" if written is None
                      else f"pipeline state is {time.time() - written:.0f} s old: is facewatch run still running?")
            online = None
        else:
            online = st.get("online")
            detail = last.get("detail", "") or ("" if online is None else ("online" if online else "offline"))
        out.append({"name": cam.name, "online": online, "detail": detail,
                    "fps_in": None if stale else st.get("fps_in"), "fps_processed": None if stale else st.get("fps_processed"),
                    "dropped": st.get("dropped"), "skipped": st.get("skipped"), "last_frame_ts": frame_ts,
                    "frame_url": f"/api/cameras/{cam.name}/latest.jpg" if frame_ts is not None else None,
                    "alert_on": cam.alert_on})
    return out


@router.get("", summary="Configured cameras with their live status")
def cameras(request: Request) -> dict[str, Any]:
    return {"cameras": camera_states(request.app.state.api)}


@router.get("/{name}/latest.jpg", summary="The camera's latest frame (JPEG)", response_class=FileResponse)
def latest(name: str, request: Request) -> FileResponse:
    api: ApiState = request.app.state.api
    if name not in {c.name for c in api.cfg.cameras}:  # only configured names ever become a path
        raise ApiError(404, f"no camera named {name!r}")
    path = api.live.frame_path(name)
    if not path.is_file():
        raise ApiError(404, f"no frame from camera {name!r} yet")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "no-store"})
