"""Prometheus metrics of the API (text format at ``/metrics``).

Each app gets its own registry. Under gunicorn with several workers set
``PROMETHEUS_MULTIPROC_DIR`` before start (``recsys serve`` does): every
worker then writes its values there and ``/metrics`` sums them.
"""

from __future__ import annotations

import os
import time

from flask import Flask, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

disable_created_metrics()  # no *_created series: they double the output for nothing here

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.5,
    1.0,
)


class Metrics:
    """The API's counters and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "recsys_http_requests",
            "HTTP requests by endpoint and status.",
            ["endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "recsys_http_request_seconds",
            "Time spent in the app per request, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.lists = Counter(
            "recsys_lists",
            "Lists served, by endpoint, primary source and degraded mode.",
            ["endpoint", "source", "degraded"],
            registry=r,
        )
        self.round_trips = Counter(
            "recsys_redis_round_trips", "Redis round trips (pipelines sent).", registry=r
        )
        self.redis_failures = Counter(
            "recsys_redis_failures", "Redis calls that failed (timeouts, refused).", registry=r
        )
        self.snapshot_loads = Counter(
            "recsys_snapshot_loads", "Snapshot versions loaded into the process.", registry=r
        )
        self.snapshot_load_failures = Counter(
            "recsys_snapshot_load_failures",
            "Attempts to load the version `current` names that failed (not ready, broken).",
            registry=r,
        )
        self.snapshot_loaded = Gauge(
            "recsys_snapshot_loaded_timestamp_seconds",
            "When the process loaded its current snapshot.",
            registry=r,
            multiprocess_mode="max",
        )
        self.events = Counter("recsys_events", "Events accepted by type.", ["type"], registry=r)
        self._children: dict = {}

    def list_served(self, endpoint: str, source: str, degraded: bool) -> None:
        key = ("list", endpoint, source, degraded)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.lists.labels(endpoint, source, str(degraded).lower())
        child.inc()

    def init_app(self, app: Flask) -> None:
        """Time every request and count it by endpoint and status."""

        @app.before_request
        def _start() -> None:
            g.recsys_started = time.perf_counter()

        @app.after_request
        def _observe(response):
            started = g.get("recsys_started")
            endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
            key = (endpoint, response.status_code)
            children = self._children.get(key)
            if children is None:
                children = self._children[key] = (
                    self.requests.labels(endpoint, str(response.status_code)),
                    self.latency.labels(endpoint),
                )
            children[0].inc()
            if started is not None:
                children[1].observe(time.perf_counter() - started)
            return response

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus text format, and its content type."""
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
