"""Prometheus metrics of one server, in the app's own registry (two apps in one process never share counters).

    shoal_requests_total{endpoint, status}        requests answered, by endpoint and HTTP status
    shoal_errors_total{endpoint, status}          the 4xx and 5xx among them
    shoal_request_latency_seconds{endpoint}       time from request to response (histogram)
    shoal_batch_rows / shoal_batch_requests       rows and requests per model call (histograms)
    shoal_queue_rows                              rows waiting for the model
    shoal_predicted_rows_total                    rows answered by POST /predict
    shoal_reloads_total{outcome}                  hot swaps: ok / failed
    shoal_model_info{name, version, backend}      1 for the version being served
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["ServeMetrics"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class ServeMetrics:
    """The server's counters, gauges and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("shoal_requests", "HTTP requests answered", ["endpoint", "status"], registry=r)
        self.errors = Counter("shoal_errors", "HTTP 4xx and 5xx answers", ["endpoint", "status"], registry=r)
        self.latency = Histogram("shoal_request_latency_seconds", "Request latency", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.batch_rows = Histogram("shoal_batch_rows", "Rows per model call", buckets=ROW_BUCKETS, registry=r)
        self.batch_requests = Histogram("shoal_batch_requests", "Requests merged into one model call",
                                        buckets=ROW_BUCKETS, registry=r)
        self.queue_rows = Gauge("shoal_queue_rows", "Rows waiting for the model", registry=r)
        self.predicted_rows = Counter("shoal_predicted_rows", "Rows answered by POST /predict", registry=r)
        self.reloads = Counter("shoal_reloads", "Model reloads (hot swaps)", ["outcome"], registry=r)
        self.model_info = Gauge("shoal_model_info", "The model version being served (value 1)",
                                ["name", "version", "backend"], registry=r)
        self._children: dict[tuple[str, int], tuple[Counter, Histogram, Counter | None]] = {}

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        children = self._children.get((endpoint, status))
        if children is None:  # labels() locks and builds a key on every call: look each pair up once
            code = str(status)
            children = self._children[endpoint, status] = (
                self.requests.labels(endpoint, code), self.latency.labels(endpoint),
                self.errors.labels(endpoint, code) if status >= 400 else None)
        requests, latency, errors = children
        requests.inc()
        latency.observe(seconds)
        if errors is not None:
            errors.inc()

    def serving(self, name: str, version: str, backend: str) -> None:
        self.model_info.clear()
        self.model_info.labels(name, version, backend).set(1)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
