"""The live stream: Server-Sent Events of new alerts (``alert``) and camera changes (``camera``), ``ping`` every 15 s.

Why one poller for all clients: the event store is the source of truth (an alert exists once it is stored, by
whichever process), so one task reads what was stored since the last look every ``api.poll_interval_s`` and
hands it to every connected client's queue. A slow client's queue is bounded: when full, that client is told
(``overflow``) and should reload from ``/api/events``, instead of the server holding memory for it forever.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, AsyncIterator

from fastapi import APIRouter, Depends, Request
from sse_starlette.sse import EventSourceResponse

from stream.api.auth import require_token
from stream.api.cameras import camera_states
from stream.api.state import ApiState
from stream.api.views import event_json
from stream.store.events import EventStoreError

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["live"], dependencies=[Depends(require_token)])

QUEUE_MAX = 1000
CAMERA_EVERY_S = 1.0
PING_S = 15.0


class Broadcaster:
    def __init__(self, api: ApiState, metrics: Any) -> None:
        self.api, self.metrics = api, metrics
        self.clients: set[asyncio.Queue] = set()
        self.task: asyncio.Task | None = None
        self.last_id = 0
        self.cameras: dict[str, tuple] = {}

    async def start(self) -> None:
        self.last_id = await asyncio.to_thread(lambda: self.api.store().last_id())
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def close_clients(self) -> None:
        """Server shutdown: end every stream now (with a ``bye``), so no connection is left to be cancelled."""
        for q in list(self.clients):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(("bye", {}))

    def _publish(self, kind: str, data: dict) -> None:
        self.metrics.stream_events.labels(kind).inc()
        for q in list(self.clients):
            try:
                q.put_nowait((kind, data))
            except asyncio.QueueFull:
                self.clients.discard(q)
                with contextlib.suppress(asyncio.QueueFull):
                    q.get_nowait()
                    q.put_nowait(("overflow", {"message": "too far behind: reload events from /api/events"}))

    async def _run(self) -> None:
        interval = self.api.cfg.api.poll_interval_s
        loop = asyncio.get_running_loop()
        next_cam = 0.0
        error = ""
        while True:
            try:
                new = await asyncio.to_thread(lambda: self.api.store().after(self.last_id))
                for e in new:
                    self.last_id = max(self.last_id, e.id or 0)
                    self._publish("alert", event_json(e))
                if loop.time() >= next_cam:
                    next_cam = loop.time() + CAMERA_EVERY_S
                    for cam in await asyncio.to_thread(camera_states, self.api):
                        key = (cam["online"], cam["detail"])
                        if self.cameras.get(cam["name"]) != key:
                            self.cameras[cam["name"]] = key
                            self._publish("camera", cam)
                error = ""
            except EventStoreError as exc:
                if str(exc) != error:
                    log.error("live stream paused: %s", exc)
                error = str(exc)
            await asyncio.sleep(interval)

    async def subscribe(self, request: Request) -> AsyncIterator[dict[str, str]]:
        q: asyncio.Queue = asyncio.Queue(QUEUE_MAX)
        self.clients.add(q)
        self.metrics.stream_clients.inc()
        try:
            yield {"event": "hello", "data": json.dumps({"last_id": self.last_id})}
            while True:
                try:
                    kind, data = await asyncio.wait_for(q.get(), timeout=PING_S)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        break
                    yield {"event": "ping", "data": "{}"}
                    continue
                yield {"event": kind, "data": json.dumps(data)}
                if kind in ("overflow", "bye"):
                    break
        finally:
            self.clients.discard(q)
            self.metrics.stream_clients.dec()


@router.get("/stream", summary="Server-Sent Events: alert, camera, ping (only what happens after connecting)")
async def stream(request: Request) -> EventSourceResponse:
    return EventSourceResponse(request.app.state.broadcaster.subscribe(request), ping=None,
                               headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
