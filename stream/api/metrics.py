"""The server's own Prometheus metrics (requests, their latency, live-stream clients); the pipeline's are
served by the supervisor on ``metrics.port``."""
from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Receive, Scope, Send


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("facewatch_api_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=self.registry)
        self.seconds = Histogram("facewatch_api_request_seconds", "HTTP request duration by route", ["route"],
                                 registry=self.registry, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.stream_clients = Gauge("facewatch_api_stream_clients", "connected live-stream clients", registry=self.registry)
        self.stream_events = Counter("facewatch_api_stream_events", "events sent on the live stream, by type", ["type"],
                                     registry=self.registry)


class MetricsMiddleware:
    """Counts each request under its route template (``/api/events/{event_id}``), so ids do not explode labels."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or ("/ui/*" if scope["path"].startswith("/ui/") else "other")
            if path != "/api/stream":  # a stream lasts as long as the client stays: not a request duration
                self.metrics.seconds.labels(path).observe(time.perf_counter() - t0)
            self.metrics.requests.labels(path, str(status["code"])).inc()
