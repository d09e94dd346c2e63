"""Per-owner and per-key limits from settings: queued or running jobs and stored upload bytes per owner (checked
against the database, so they hold across API processes), predict requests per second per key (a token bucket in
each API process). Unset limits (the default) allow everything."""

from __future__ import annotations

import math
import threading
import time
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth import CurrentCaller, owned
from app.deps import SettingsDep
from core.settings import Settings
from core.tables import FINISHED, Dataset, Job

JOB_RETRY_AFTER_S = 60
"""What a client over its job limit is told to wait: a slot frees only when one of its jobs ends."""


def active_jobs(session: Session, owner: str | None) -> int:
    """The owner's queued and running jobs."""
    query = owned(select(func.count()).select_from(Job), Job, owner)
    return session.scalar(query.where(Job.status.not_in([state.value for state in FINISHED]))) or 0


def stored_bytes(session: Session, owner: str | None) -> int:
    """The bytes of the owner's dataset uploads."""
    return int(session.scalar(owned(select(func.coalesce(func.sum(Dataset.upload_bytes), 0)), Dataset, owner)) or 0)


def check_job_slot(session: Session, settings: Settings, owner: str | None) -> None:
    """429 with Retry-After when the owner already has `max_active_jobs` jobs queued or running."""
    limit = settings.max_active_jobs
    if limit is not None and (running := active_jobs(session, owner)) >= limit:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"you have {running} jobs queued or running, the limit (EFFDET_MAX_ACTIVE_JOBS) is {limit}; "
            "wait for one to end or cancel one, then submit again",
            headers={"Retry-After": str(JOB_RETRY_AFTER_S)},
        )


def check_storage(session: Session, settings: Settings, owner: str | None, incoming: int) -> None:
    """413 when `incoming` more upload bytes would take the owner over `max_stored_bytes`."""
    limit = settings.max_stored_bytes
    if limit is not None and (used := stored_bytes(session, owner)) + incoming > limit:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"this upload ({incoming} bytes) would take your datasets to {used + incoming} bytes, over the limit "
            f"(EFFDET_MAX_STORED_BYTES) of {limit}; delete datasets you no longer need, then upload again",
        )


class RateLimiter:
    """A token bucket per key: `rate` requests per second on average, bursts of up to max(1, rate)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = max(1.0, rate)
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)
        self._lock = threading.Lock()

    def wait_s(self, key: str) -> float:
        """Take a token for `key` and return 0, or take none and return the seconds until one is there."""
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


def predict_rate(request: Request, caller: CurrentCaller, settings: SettingsDep) -> None:
    """429 with Retry-After when the request's key is over `predict_rps` (per API process)."""
    rate = settings.predict_rps
    if rate is None:
        return
    limiter: RateLimiter | None = getattr(request.app.state, "predict_limiter", None)
    if limiter is None or limiter.rate != rate:
        limiter = request.app.state.predict_limiter = RateLimiter(rate)
    key = "" if caller is None else caller.key_id or f"static:{caller.owner}"
    wait = limiter.wait_s(key)
    if wait > 0:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"this key may send {rate:g} predict requests per second (EFFDET_PREDICT_RPS); retry after the "
            "Retry-After seconds",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


PredictRate = Annotated[None, Depends(predict_rate)]
