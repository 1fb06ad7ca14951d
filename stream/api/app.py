"""The FastAPI application: routers, the error shape, the token, metrics, the live-stream poller, the web UI."""
from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from stream.api import cameras, errors, events, gallery, live, recognize, system
from stream.api.metrics import MetricsMiddleware, ServerMetrics
from stream.api.state import ApiState
from stream.config import Config

STATIC = Path(__file__).resolve().parent / "static"


def create_app(cfg: Config) -> FastAPI:
    api = ApiState(cfg)
    metrics = ServerMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await app.state.broadcaster.start()
        try:
            yield
        finally:
            await app.state.broadcaster.stop()
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
    mb = cfg.api.max_upload_mb * (cfg.api.max_files + 1)  # every file of an enrollment, plus the form around it
    app.add_middleware(errors.BodyLimit, limit=int(mb * 1024 * 1024))

    # The UI shell is public (it holds no data; it asks for the token); everything it loads needs the token.
    if STATIC.is_dir():
        app.mount("/ui", StaticFiles(directory=STATIC), name="ui")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    return app
