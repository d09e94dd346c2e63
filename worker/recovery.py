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
import threading
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from app.db import get_engine, session_scope
from app.models import RUNNING, Dataset, DatasetStatus, Job, JobEvent, JobStatus, utcnow
from app.settings import get_settings
from worker.lease import holder_is_dead

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
"""Starts after which a job whose worker keeps dying is failed instead of re-queued (e.g. killed for memory)."""

REQUEUED_RESEND_FACTOR = 10
"""A re-queued job not picked up within this many leases is sent again (its message may have been lost)."""

UNCLAIMED_RESEND_FACTOR = 2
"""A queued job or a never-started conversion still waiting this many leases after it was sent, while a worker
sits idle, is sent again by that worker (busy workers never do, so a long queue gets no duplicates)."""

UNCLAIMED_MESSAGE = "no worker took the job yet; it is sent to the queue again (its message may have been lost)"


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes for timezone columns; they were written in UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=utcnow().tzinfo)


def _job_needs_requeue(job: Job, now: datetime, lease_s: float) -> bool:
    """A held lease that is stale or held by a dead local process, or a re-queue that was never picked up."""
    beat = _aware(job.heartbeat_at)
    if job.worker is None:
        return beat is None or beat < now - timedelta(seconds=lease_s * REQUEUED_RESEND_FACTOR)
    return beat is None or beat < now - timedelta(seconds=lease_s) or holder_is_dead(job.worker)


def _requeue_job(job: Job, now: datetime) -> bool:
    """Release the dead holder's lease (or fail the job after MAX_ATTEMPTS); True when it must be sent again."""
    with session_scope() as session:
        same = (Job.id == job.id, Job.status == job.status, Job.attempts == job.attempts)
        holder = Job.worker.is_(None) if job.worker is None else Job.worker == job.worker
        if job.attempts >= MAX_ATTEMPTS:
            error = (
                f"the worker running this job stopped {job.attempts} times (last: {job.worker}); it may run out "
                "of memory: lower batch_size or image_size, or freeze the backbone; see the job logs"
            )
            values: dict[str, Any] = {"status": JobStatus.failed.value, "error": error, "finished_at": now}
            event = {"status": JobStatus.failed.value, "error": error}
            kind = "state"
        else:
            values = {"worker": None, "heartbeat_at": now}
            event = {"message": f"worker {job.worker or '(re-queued)'} stopped responding; the job is re-queued"}
            kind = "log"
        result = session.execute(
            update(Job).where(*same, holder).values(**values).execution_options(synchronize_session=False)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            return False  # a worker took it meanwhile
        session.add(JobEvent(job_id=job.id, kind=kind, data=event))
    log.warning("job %s: %s", job.id, event.get("message") or event.get("error"))
    return kind == "log"


def _stale_datasets(now: datetime, lease_s: float, idle: bool) -> list[str]:
    """Validating datasets whose conversion started (progress set) and went silent for a lease, or (when `idle`)
    never started within UNCLAIMED_RESEND_FACTOR leases of being sent; progress is cleared and updated_at
    stamped by a conditional update, so one sweeper sends each once."""
    silent = now - timedelta(seconds=lease_s)
    unclaimed = now - timedelta(seconds=lease_s * UNCLAIMED_RESEND_FACTOR)
    chosen: list[str] = []
    with session_scope() as session:
        rows = session.scalars(select(Dataset).where(Dataset.status == DatasetStatus.validating.value)).all()
        for dataset in rows:
            updated = _aware(dataset.updated_at)
            if dataset.progress is None and not idle:
                continue
            if updated is not None and updated < (silent if dataset.progress is not None else unclaimed):
                result = session.execute(
                    update(Dataset)
                    .where(Dataset.id == dataset.id, Dataset.updated_at == dataset.updated_at)
                    .values(progress=None)
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount:  # type: ignore[attr-defined]
                    chosen.append(dataset.id)
    return chosen


def _unclaimed_jobs(now: datetime, lease_s: float) -> list[str]:
    """Queued jobs no worker took within UNCLAIMED_RESEND_FACTOR leases of being sent (submission or the last
    re-send); each is stamped re-sent (heartbeat_at) by a conditional update, so one sweeper sends it once."""
    cutoff = now - timedelta(seconds=lease_s * UNCLAIMED_RESEND_FACTOR)
    chosen: list[str] = []
    with session_scope() as session:
        rows = session.execute(
            select(Job.id, Job.created_at, Job.heartbeat_at).where(
                Job.status == JobStatus.queued.value, Job.worker.is_(None)
            )
        ).all()
        for job_id, created_at, heartbeat_at in rows:
            sent = _aware(heartbeat_at) or _aware(created_at)
            if sent is None or sent >= cutoff:
                continue
            same = Job.heartbeat_at.is_(None) if heartbeat_at is None else Job.heartbeat_at == heartbeat_at
            result = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.queued.value, Job.worker.is_(None), same)
                .values(heartbeat_at=now)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount:  # type: ignore[attr-defined]
                session.add(JobEvent(job_id=job_id, kind="log", data={"message": UNCLAIMED_MESSAGE}))
                log.warning("job %s: %s", job_id, UNCLAIMED_MESSAGE)
                chosen.append(job_id)
    return chosen


def worker_is_idle() -> bool:
    """True in a worker's main process that holds no task, neither running nor prefetched."""
    from celery.worker import state

    return not state.active_requests and not state.reserved_requests


def sweep(idle: bool = True) -> tuple[list[str], list[str]]:
    """Re-queue dead workers' jobs and stalled conversions, and (when this worker is `idle`) work whose message
    was lost; returns (job ids, dataset ids) sent again."""
    from worker.queue import send_convert, send_job

    settings = get_settings()
    now = utcnow()
    with session_scope() as session:
        running = session.scalars(select(Job).where(Job.status.in_([s.value for s in RUNNING]))).all()
    jobs = [job.id for job in running if _job_needs_requeue(job, now, settings.job_lease_s) and _requeue_job(job, now)]
    if idle:
        jobs += _unclaimed_jobs(now, settings.job_lease_s)
    datasets = _stale_datasets(now, settings.job_lease_s, idle)
    for job_id in jobs:
        send_job(job_id)
    for dataset_id in datasets:
        log.warning("dataset %s: its conversion stopped responding or never started; sent again", dataset_id)
        send_convert(dataset_id)
    return jobs, datasets


class Sweeper:
    """A daemon thread running `sweep` now and every `interval` seconds (in the worker's main process)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="effdet-recovery", daemon=True)

    def _run(self) -> None:
        while True:
            try:
                sweep(idle=worker_is_idle())
            except Exception:  # e.g. the database is not migrated yet or briefly unreachable
                log.warning("recovery sweep failed; retrying in %.0f s", self.interval, exc_info=True)
            if self._stop.wait(self.interval):
                return

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)


_sweeper: Sweeper | None = None


def on_worker_ready(**_: Any) -> None:
    """Start sweeping when the worker is ready (its main process; pool children never sweep)."""
    global _sweeper
    if _sweeper is None:
        _sweeper = Sweeper(max(1.0, min(30.0, get_settings().job_lease_s / 2)))
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
