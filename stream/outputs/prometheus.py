"""Prometheus endpoint for the pipeline, fed from the stages' heartbeats (one HTTP server, in the supervisor)."""
from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

LATENCY_BUCKETS_MS = (25, 50, 100, 150, 200, 250, 400, 600, 1000, 2000, 5000)
COUNTERS = ("frames_in", "frames_out", "faces_detected", "faces_in", "faces_out", "faces_embedded", "faces_matched",
            "dropped", "dropped_stale", "dropped_overload", "skipped", "gated", "malformed", "alerts", "suppressed_cooldown", "offline")
GAUGES = ("queue_depth", "proc_ms_p50", "proc_ms_p99", "batch_mean", "batch_max", "latency_ms_p50", "latency_ms_p99", "is_online")


class PipelineCollector:
    def __init__(self, supervisor) -> None:
        self.sup = supervisor
        self.latencies: list[float] = []
        self.lock = threading.Lock()

    def collect(self):
        counters = {k: CounterMetricFamily(f"facewatch_{k}", f"{k} per stage", labels=["stage"]) for k in COUNTERS}
        gauges = {k: GaugeMetricFamily(f"facewatch_{k}", f"{k} per stage", labels=["stage"]) for k in GAUGES}
        restarts = CounterMetricFamily("facewatch_stage_restarts", "restarts per stage", labels=["stage"])
        lat = []
        for c in self.sup.children:
            for k, fam in counters.items():
                if k in c.metrics:
                    fam.add_metric([c.name], c.metrics[k])
            for k, fam in gauges.items():
                if k in c.metrics:
                    fam.add_metric([c.name], c.metrics[k])
            restarts.add_metric([c.name], c.restarts)
            if c.spec.kind == "alert":
                lat = c.metrics.get("latency_recent_ms", [])
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


def serve(supervisor, host: str, port: int):
    """Start the endpoint on ``host:port`` in a thread; returns the server (``shutdown()`` stops it)."""
    from wsgiref.simple_server import make_server, WSGIRequestHandler

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args) -> None:
            pass

    reg = CollectorRegistry()
    reg.register(PipelineCollector(supervisor))
    httpd = make_server(host, port, make_wsgi_app(reg), WSGIServer, handler_class=Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd
