"""The FastAPI application: routers, the error shape, the token, metrics, the live-stream poller, the web UI."""
from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from stream.api import cameras, errors, events, gallery, live, recognize, system
from stream.api.metrics import MetricsMiddleware, ServerMetrics
from stream.api.state import ApiState
from stream.config import Config

STATIC = Path(__file__).resolve().parent / "static"
# The web UI loads nothing from elsewhere and runs no inline script: a page injected with a user-chosen name
# could not run code or send data out even if escaping failed somewhere.
UI_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; "
          "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


class SecurityHeaders:
    """nosniff and no referrer everywhere; the CSP above on the UI's own files."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ui = scope["path"] == "/" or scope["path"].startswith("/ui/")

        async def add(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
                if ui:
                    headers += [(b"content-security-policy", UI_CSP.encode()), (b"x-frame-options", b"DENY")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, add)


def create_app(cfg: Config) -> FastAPI:
    api = ApiState(cfg)
    metrics = ServerMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await app.state.broadcaster.start()
        # the event index (search by face) may need building from a large store: start now, in the background
        warm = asyncio.get_running_loop().run_in_executor(None, api.index)
        try:
            yield
        finally:
            await app.state.broadcaster.stop()
            try:
                await warm  # never close the stores under a build
            except Exception as exc:  # noqa: BLE001 - searches report it themselves; shutdown goes on
                logging.getLogger(__name__).warning("event index not built: %s", exc)
            api.close()

    app = FastAPI(title="facewatch", version="0.1.0", lifespan=lifespan, docs_url=None, openapi_url=None, redoc_url=None,
                  description="Real-time face recognition: cameras, events, gallery, recognition on demand, search by face.")
    app.state.api = api
    app.state.metrics = metrics
    app.state.broadcaster = live.Broadcaster(api, metrics)
    errors.install(app)
    for module in (system, cameras, events, gallery, recognize, live):
        app.include_router(module.router)
    app.include_router(system.public)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(SecurityHeaders)
    mb = cfg.api.max_upload_mb * (cfg.api.max_files + 1)  # every file of an enrollment, plus the form around it
    app.add_middleware(errors.BodyLimit, limit=int(mb * 1024 * 1024))

    # The UI shell is public (it holds no data; it asks for the token); everything it loads needs the token.
    if STATIC.is_dir():
        app.mount("/ui", StaticFiles(directory=STATIC), name="ui")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    return app
