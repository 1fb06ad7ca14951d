"""The API token: required on every route (images and the live stream included) whenever one is configured.

``facewatch serve`` refuses to listen on a non-loopback address without one (``stream.preflight.api_problems``).
A client presents it as ``Authorization: Bearer <token>``, as the ``facewatch_token`` cookie that
``POST /api/login`` sets (the web UI: ``<img>`` and EventSource cannot send headers) or as ``?token=``.
Compared in constant time; never logged.
"""
from __future__ import annotations

import hmac

from fastapi import Request

from stream.api.errors import ApiError

COOKIE = "facewatch_token"


def presented(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.cookies.get(COOKIE) or request.query_params.get("token")


def token_ok(expected: str | None, given: str | None) -> bool:
    if expected is None:
        return True
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def require_token(request: Request) -> None:
    """Dependency of every protected router."""
    if not token_ok(request.app.state.api.token, presented(request)):
        raise ApiError(401, "missing or wrong API token (Authorization: Bearer <token>, or log in)")
