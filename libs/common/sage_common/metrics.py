"""Prometheus metrics every service exposes: per route and per bus consumer.

Metrics live in the process-wide registry and carry a `service` label, so several apps built in one
test process share them without registering twice. A service run as several worker processes
(sage_common.runner) has `PROMETHEUS_MULTIPROC_DIR` set: each worker writes its values there, and
`/metrics` answers what all of them counted (counters and histograms summed, gauges per pid).
"""

from __future__ import annotations

import os
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

HTTP_REQUESTS = Counter(
    "sage_http_requests_total", "HTTP requests handled", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "sage_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
EVENTS_HANDLED = Counter("sage_events_handled_total", "Events handled", ["service", "consumer"])
EVENTS_FAILED = Counter(
    "sage_events_failed_total", "Event handling attempts that failed", ["service", "consumer"]
)
EVENTS_DEAD = Counter(
    "sage_events_dead_lettered_total",
    "Events sent to the dead-letter queue",
    ["service", "consumer"],
)
EVENTS_DUPLICATE = Counter(
    "sage_events_duplicate_total",
    "Redeliveries of events already handled, acked with no effect",
    ["service", "consumer"],
)
EVENT_LAG = Histogram(
    "sage_event_lag_seconds",
    "Time from an event's creation to its handling",
    ["service", "consumer"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, 1800),
)
OUTBOX_PENDING = Gauge("sage_outbox_pending", "Outbox rows not yet published", ["service"])
EVENTS_PUBLISHED = Counter("sage_events_published_total", "Events published", ["service", "type"])


def _route_name(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


def metrics_middleware(service: str) -> Middleware:
    """Count and time each request by its route template, never by its raw path."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            route = _route_name(request)
            HTTP_REQUESTS.labels(service, request.method, route, str(status)).inc()
            HTTP_LATENCY.labels(service, request.method, route).observe(time.perf_counter() - start)

    return middleware


async def metrics_handler(request: web.Request) -> web.Response:
    if os.environ.get(MULTIPROC_DIR):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
