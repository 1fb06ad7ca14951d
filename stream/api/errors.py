"""One error shape for every route: ``{"error": {"code", "message"}}`` with a one-line message.

Why: the web UI, scripts and other systems show or log the message as it is; a FastAPI default (a list of
pydantic errors, or an HTML 500 page) would make each of them parse something different.
"""
from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 409: "conflict",
         413: "too_large", 415: "unsupported_type", 422: "no_face", 503: "unavailable"}


class ApiError(Exception):
    """Raised by handlers: becomes ``status`` with ``{"error": {"code", "message", ...extra}}``."""

    def __init__(self, status: int, message: str, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code or CODES.get(status, "error"), extra


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, CODES.get(exc.status_code, "error"), str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("body", "query", "path"))
        return error_response(400, "bad_request", f"{where}: {first.get('msg')}" if where else str(first.get("msg")))

    app.add_middleware(CatchAll)


class CatchAll:
    """An unexpected exception becomes a 500 with the usual error shape and ONE log line (the traceback only at
    debug level): Starlette's own handler would print a traceback for every one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = {"yes": False}

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                started["yes"] = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:  # noqa: BLE001 - the last line of defence, by design
            log.error("%s %s failed: %s: %s", scope.get("method"), scope.get("path"), type(exc).__name__, exc)
            log.debug("traceback", exc_info=exc)
            if not started["yes"]:
                await error_response(500, "internal", "internal error (the server log says more)")(scope, receive, send)


class BodyLimit:
    """Refuse a request body over ``limit`` bytes with 413 before it is parsed or spooled to disk: by its
    Content-Length when given, else by counting what arrives. A chunked upload is cut off at the limit (the app
    sees the body end there) and whatever the app answers to the truncated body is replaced by the 413."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = error_response(413, "too_large", f"request body larger than {self.limit // (1024 * 1024)} MB "
                                                       "(api.max_upload_mb x api.max_files)")
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await too_large(scope, receive, send)
            return
        state = {"n": 0, "over": False, "answered": False}

        async def counted() -> dict:
            if state["over"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["n"] += len(message.get("body", b""))
                if state["n"] > self.limit:
                    state["over"] = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def guarded(message: dict) -> None:
            if state["over"]:
                if not state["answered"]:
                    state["answered"] = True
                    await too_large(scope, receive, send)
                return
            await send(message)

        await self.app(scope, counted, guarded)
