"""Prometheus metrics: requests and latency by route, jobs by state (read from the database at scrape time),
and prediction latency."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.tables import Job, JobStatus

REGISTRY = CollectorRegistry()
REQUESTS = Counter("effdet_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=REGISTRY)
REQUEST_SECONDS = Histogram(
    "effdet_http_request_duration_seconds", "time to the response headers", ["method", "route"], registry=REGISTRY
)
JOBS = Gauge("effdet_jobs", "jobs by state", ["status"], registry=REGISTRY)
PREDICT_SECONDS = Histogram(
    "effdet_predict_duration_seconds",
    "inference time of one predict request (the first for a model includes loading it)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)


class MetricsMiddleware:
    """Counts requests and times them, labelled by route template (not the raw path, to bound cardinality)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status_code = 500

        async def send_timed(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                route = getattr(scope.get("route"), "path", "unmatched")
                REQUEST_SECONDS.labels(scope["method"], route).observe(time.perf_counter() - start)
            await send(message)

        try:
            await self.app(scope, receive, send_timed)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            REQUESTS.labels(scope["method"], route, str(status_code)).inc()


def render(session: Session) -> bytes:
    """The metrics page, with the jobs gauge refreshed from the database."""
    counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).tuples().all())
    for state in JobStatus:
        JOBS.labels(state.value).set(counts.get(state.value, 0))
    return generate_latest(REGISTRY)
