"""Job leases: the row says which worker process runs a job and when it last showed life, so a job never runs
twice at once and a job whose worker died can be taken over.

A lease is `Job.worker` ("hostname:pid") plus `Job.heartbeat_at`. It is taken with one conditional UPDATE
(atomic on SQLite and PostgreSQL alike), kept fresh by a heartbeat thread, and every later write of the
holder is conditional on still holding it, so a worker that lost its lease can no longer change the job.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from types import TracebackType

from sqlalchemy import ColumnElement, and_, or_, update

from app.db import session_scope
from app.models import FINISHED, Job, JobStatus, utcnow

log = logging.getLogger(__name__)


class LeaseLostError(RuntimeError):
    """Another worker took the job over (this one was silent longer than the lease); stop touching it."""


def worker_id() -> str:
    """This process's lease holder name, 'hostname:pid'."""
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_is_dead(holder: str | None) -> bool:
    """True when `holder` is a process of this host that no longer exists (its lease need not be waited out)."""
    if not holder or ":" not in holder:
        return False
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _free(lease_s: float, now: datetime, dead_holder: str | None) -> ColumnElement[bool]:
    """SQL condition: nobody holds the lease, or its holder went silent, or it is a dead local process."""
    stale = now - timedelta(seconds=lease_s)
    options = [Job.worker.is_(None), Job.heartbeat_at.is_(None), Job.heartbeat_at < stale]
    if dead_holder is not None:
        options.append(Job.worker == dead_holder)
    return or_(*options)


def acquire(job_id: str, holder: str, lease_s: float) -> int | None:
    """Take the job's lease and move it to training; returns the attempt number, or None when it is held
    by a live worker or finished. One statement, so two workers racing for it cannot both win."""
    with session_scope() as session:
        current = session.get(Job, job_id)
        if current is None or current.status in FINISHED:
            return None
        dead = current.worker if holder_is_dead(current.worker) else None
        now = utcnow()
        result = session.execute(
            update(Job)
            .where(and_(Job.id == job_id, Job.status.not_in([s.value for s in FINISHED]), _free(lease_s, now, dead)))
            .values(
                worker=holder,
                heartbeat_at=now,
                attempts=Job.attempts + 1,
                status=JobStatus.training.value,
                started_at=current.started_at or now,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        return current.attempts + 1


def held(job_id: str, holder: str) -> ColumnElement[bool]:
    """SQL condition for the holder's writes: the job is still ours."""
    return and_(Job.id == job_id, Job.worker == holder)


def renew(job_id: str, holder: str) -> bool:
    """Refresh the heartbeat; False when the lease was taken by someone else."""
    with session_scope() as session:
        result = session.execute(
            update(Job)
            .where(held(job_id, holder))
            .values(heartbeat_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


class Heartbeat:
    """A daemon thread calling `renew` every `interval` seconds while a task runs (training, evaluation and
    export alike), so a long first step or a slow export never looks like a dead worker; `renew` answering
    False means the lease was lost, and `lost` is set."""

    def __init__(self, name: str, renew: Callable[[], bool], interval: float) -> None:
        self.name, self.renew, self.interval = name, renew, interval
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{name}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if not self.renew():
                    log.warning("%s: lease lost to another worker; stopping", self.name)
                    self.lost.set()
                    return
            except Exception:  # a database hiccup: try again next beat, the lease is long enough
                log.warning("%s: heartbeat failed", self.name, exc_info=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)
