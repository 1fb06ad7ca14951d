"""Prometheus endpoint for the pipeline, fed from the stages' heartbeats (one HTTP server, in the supervisor).

It answers ``/metrics`` only (404 elsewhere), so a scanner or a typo does not get a page that looks right.
Delivery outbox metrics come from the alert stage's heartbeat keys ``delivery:<sink>:<what>``.
"""
from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

LATENCY_BUCKETS_MS = (25, 50, 100, 150, 200, 250, 400, 600, 1000, 2000, 5000)
COUNTERS = ("frames_in", "frames_out", "faces_detected", "faces_in", "faces_out", "faces_embedded", "faces_matched",
            "dropped", "dropped_stale", "dropped_overload", "skipped", "gated", "gated_exposure", "malformed", "alerts", "suppressed_cooldown",
            "offline", "track_resets", "decode_errors", "gallery_reloads",
            "unknown_gated_small", "unknown_gated_blurred", "detect_full", "detect_regions", "detect_skipped")
DELIVERY_STATES = ("pending", "delivered", "failed")
GAUGES = ("queue_depth", "detect_interval_ms", "proc_ms_p50", "proc_ms_p99", "batch_mean", "batch_max", "latency_ms_p50", "latency_ms_p99", "is_online")


class PipelineCollector:
    def __init__(self, supervisor) -> None:
        self.sup = supervisor
        self.latencies: list[float] = []
        self.lock = threading.Lock()

    def collect(self):
        counters = {k: CounterMetricFamily(f"facewatch_{k}", f"{k} per stage", labels=["stage"]) for k in COUNTERS}
        gauges = {k: GaugeMetricFamily(f"facewatch_{k}", f"{k} per stage", labels=["stage"]) for k in GAUGES}
        restarts = CounterMetricFamily("facewatch_stage_restarts", "restarts per stage", labels=["stage"])
        lat: list[float] = []
        deliveries: dict = {}
        for c in self.sup.children:
            for k, fam in counters.items():
                if k in c.metrics:
                    fam.add_metric([c.name], c.metrics[k])
            for k, fam in gauges.items():
                if k in c.metrics:
                    fam.add_metric([c.name], c.metrics[k])
            restarts.add_metric([c.name], c.total_restarts)
            if c.spec.kind == "alert":
                lat = c.metrics.get("latency_recent_ms", [])
                deliveries = c.metrics
        buckets, acc = [], 0
        for b in LATENCY_BUCKETS_MS:
            acc = sum(1 for v in lat if v <= b)
            buckets.append((str(b), acc))
        buckets.append(("+Inf", len(lat)))
        hist = HistogramMetricFamily("facewatch_capture_to_alert_ms", "capture->alert latency of recent alerts (ms)",
                                     buckets=buckets, sum_value=float(sum(lat)))
        yield from counters.values()
        yield from gauges.values()
        yield restarts
        yield hist
        yield from delivery_families(deliveries)
        state = getattr(self.sup, "state", None)
        if callable(state):  # 1 while every stage runs and every camera is online; 0 while degraded
            healthy = GaugeMetricFamily("facewatch_pipeline_healthy", "1 = healthy, 0 = degraded (a stage restarted "
                                        "recently or a camera is offline)")
            healthy.add_metric([], 1.0 if state()[0] == "healthy" else 0.0)
            yield healthy


def delivery_families(metrics: dict):
    """``facewatch_deliveries{sink,state}``, the oldest pending delivery's age, give-ups and failed tries per sink,
    from the alert stage's ``delivery:<sink>:<what>`` heartbeat keys."""
    counts = GaugeMetricFamily("facewatch_deliveries", "alert deliveries in the event store's outbox, per sink and state",
                               labels=["sink", "state"])
    oldest = GaugeMetricFamily("facewatch_delivery_oldest_pending_seconds",
                               "age of the oldest pending delivery per sink (0 = none pending)", labels=["sink"])
    given_up = CounterMetricFamily("facewatch_delivery_given_up", "deliveries marked failed after give_up_after_s, "
                                   "since the alert stage started", labels=["sink"])
    tries = CounterMetricFamily("facewatch_delivery_failed_tries", "failed delivery tries (each one retried or given "
                                "up on), since the alert stage started", labels=["sink"])
    for key, value in metrics.items():
        parts = key.split(":")
        if len(parts) != 3 or parts[0] != "delivery" or not isinstance(value, (int, float)):
            continue
        _, sink, what = parts
        if what in DELIVERY_STATES:
            counts.add_metric([sink, what], value)
        elif what == "oldest_pending_s":
            oldest.add_metric([sink], value)
        elif what == "given_up":
            given_up.add_metric([sink], value)
        elif what == "try_failures":
            tries.add_metric([sink], value)
    yield from (counts, oldest, given_up, tries)


def metrics_only(app):
    """The WSGI ``app`` at ``/metrics``; 404 for any other path."""

    def wrapped(environ, start_response):
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"not found: metrics are at /metrics\n"]
        return app(environ, start_response)

    return wrapped


def serve(supervisor, host: str, port: int):
    """Start the endpoint on ``host:port`` in a thread; returns the server (``shutdown()`` stops it)."""
    from wsgiref.simple_server import make_server, WSGIRequestHandler

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args) -> None:
            pass

    reg = CollectorRegistry()
    reg.register(PipelineCollector(supervisor))
    httpd = make_server(host, port, metrics_only(make_wsgi_app(reg)), WSGIServer, handler_class=Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd
