"""Recovery of work whose worker died, for every broker transport.

Celery's acks_late + reject_on_worker_lost requeue a task when a pool child dies, but a worker killed as a
whole (SIGKILL of the process group, a lost machine) leaves its message unacknowledged: Redis gives it back
only after the visibility timeout, kombu's SQLAlchemy transport never. So each worker also sweeps the
database, at start and every few seconds: a running job whose lease went stale (or whose holder is a dead
process of this host) is re-queued, and so is a dataset whose conversion stopped reporting. A message can also
vanish before any worker took it (Redis restarted without persistence): an idle worker, which would have taken
any message waiting in its queue, sends again a job still queued, or a dataset never started, a few leases after
it was sent. Duplicate deliveries are harmless: the job lease and the dataset status checks let only one of
them do the work.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from core import deletion, evaluations, queue, states
from core.db import get_engine, session_scope
from core.settings import get_settings
from core.states import aware, holder_is_dead
from core.tables import RUNNING, Job, utcnow
from worker.periodic import Periodic

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
"""Starts after which a job whose worker keeps dying is failed instead of re-queued (e.g. killed for memory)."""

REQUEUED_RESEND_FACTOR = 10
"""A re-queued job not picked up within this many leases is sent again (its message may have been lost)."""

UNCLAIMED_RESEND_FACTOR = 2
"""A queued job or a never-started conversion still waiting this many leases after it was sent, while a worker
sits idle, is sent again by that worker (busy workers never do, so a long queue gets no duplicates)."""


def _job_needs_requeue(job: Job, now: datetime, lease_s: float) -> bool:
    """A held lease that is stale or held by a dead local process, or a re-queue that was never picked up."""
    beat = aware(job.heartbeat_at)
    if job.worker is None:
        return beat is None or beat < now - timedelta(seconds=lease_s * REQUEUED_RESEND_FACTOR)
    return beat is None or beat < now - timedelta(seconds=lease_s) or holder_is_dead(job.worker)


def _release(job: Job, now: datetime) -> bool:
    """Release a dead worker's job (or fail it after MAX_ATTEMPTS starts); True when it must be sent again."""
    event = states.release_or_fail(job, now, MAX_ATTEMPTS)
    if event is None:
        return False  # a worker took it meanwhile
    log.warning("job %s: %s", job.id, event.data.get("message") or event.data.get("error"))
    return event.kind == "log"


def worker_is_idle() -> bool:
    """True in a worker's main process that holds no task, neither running nor prefetched."""
    from celery.worker import state

    return not state.active_requests and not state.reserved_requests


def sweep(idle: bool = True) -> tuple[list[str], list[str]]:
    """Finish interrupted deletions, re-queue dead workers' jobs, evaluations and stalled conversions, and (when
    this worker is `idle`) work whose message was lost; returns (job ids, dataset ids) sent again (evaluations are
    logged)."""
    settings = get_settings()
    lease_s = settings.job_lease_s
    now = utcnow()
    purged = deletion.purge_marked(settings, timedelta(seconds=lease_s))
    if purged:
        log.warning("finished %d deletion(s) that an API process left half done", purged)
    deletion.drop_expired_requests()
    if dropped := deletion.drop_stale_uploads(settings):
        log.warning("removed %d partial upload(s) that a killed API process left", dropped)
    with session_scope() as session:
        running = session.scalars(select(Job).where(Job.status.in_([s.value for s in RUNNING]))).all()
    jobs = [job.id for job in running if _job_needs_requeue(job, now, lease_s) and _release(job, now)]
    waited = now - timedelta(seconds=lease_s * UNCLAIMED_RESEND_FACTOR)
    if idle:
        unclaimed = states.mark_unclaimed_jobs(now, waited)
        for job_id in unclaimed:
            log.warning("job %s: %s", job_id, states.UNCLAIMED_MESSAGE)
        jobs += unclaimed
    datasets = states.claim_stalled_datasets(now - timedelta(seconds=lease_s), waited, idle)
    for evaluation_id in evaluations.release_stalled(now, lease_s, waited if idle else None):
        log.warning("evaluation %s: its worker stopped responding or it was never taken; sent again", evaluation_id)
        queue.send_evaluation(evaluation_id)
    for job_id in jobs:
        queue.send_job(job_id)
    for dataset_id in datasets:
        log.warning("dataset %s: its conversion stopped responding or never started; sent again", dataset_id)
        queue.send_convert(dataset_id)
    return jobs, datasets


_sweeper: Periodic | None = None


def on_worker_ready(**_: Any) -> None:
    """Start sweeping when the worker is ready (its main process; pool children never sweep)."""
    global _sweeper
    if _sweeper is None:
        interval = max(1.0, min(30.0, get_settings().job_lease_s / 2))
        _sweeper = Periodic("recovery", interval, lambda: sweep(idle=worker_is_idle()))
        _sweeper.start()


def on_worker_shutdown(**_: Any) -> None:
    """Stop the sweeper thread."""
    global _sweeper
    if _sweeper is not None:
        _sweeper.stop()
        _sweeper = None


def on_process_init(**_: Any) -> None:
    """In a forked pool child: drop the parent's pooled connections without closing them (they are shared)."""
    if get_engine.cache_info().currsize:
        get_engine().dispose(close=False)


def install() -> None:
    """Connect the handlers to Celery's worker signals (called when the worker imports its tasks)."""
    from celery import signals

    signals.worker_ready.connect(on_worker_ready, weak=False)
    signals.worker_shutdown.connect(on_worker_shutdown, weak=False)
    signals.worker_process_init.connect(on_process_init, weak=False)
