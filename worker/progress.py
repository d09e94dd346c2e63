"""Progress recorders: what a running task tells the database, throttled so SQLite stays cheap.

One JSON shape per resource: a dataset's progress is `{"done", "total"}`; a job's is effdet's
`train.Progress` (step, total_steps, loss, learning_rate, images_per_sec, eta_seconds, ...), also appended
to the job's event log as `JobEvent(kind="progress")`. Job writes are conditional on holding the lease.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import select, update

from app.db import session_scope
from app.models import Dataset, DatasetStatus, Job, JobEvent, utcnow
from worker.lease import LeaseLostError, held

log = logging.getLogger(__name__)

CANCEL_POLL_S = 1.0
"""Seconds between two reads of `Job.cancel_requested` while training."""

DATASET_PROGRESS_S = 1.0
"""Seconds between two writes of a dataset's conversion progress."""


def add_event(job_id: str, kind: str, data: dict[str, Any]) -> None:
    """Append one event to the job's log (state, progress, log or metrics)."""
    with session_scope() as session:
        session.add(JobEvent(job_id=job_id, kind=kind, data=data))


def set_state(job_id: str, holder: str, status: str, **values: Any) -> None:
    """Move a job we hold to `status` (with extra column values) and log a state event, in one transaction;
    raises LeaseLostError when the job is no longer ours."""
    now = utcnow()
    with session_scope() as session:
        result = session.execute(
            update(Job)
            .where(held(job_id, holder))
            .values(status=status, heartbeat_at=now, **values)
            .execution_options(synchronize_session=False)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            raise LeaseLostError(f"job {job_id} is no longer held by {holder}")
        event: dict[str, Any] = {"status": status, "worker": holder}
        if values.get("error"):
            event["error"] = values["error"]
        session.add(JobEvent(job_id=job_id, kind="state", data=event))


class JobRecorder:
    """The training callbacks of one job: `progress` (throttled row + event, renews the lease) and
    `should_stop` (cancel requested or lease lost; polls the database at most every CANCEL_POLL_S)."""

    def __init__(self, job_id: str, holder: str, interval_s: float, lease_lost: Any = None) -> None:
        self.job_id, self.holder, self.interval_s = job_id, holder, interval_s
        self.lease_lost = lease_lost  # a threading.Event set by the heartbeat, or None
        self.cancelled = False
        self.lost = False
        self._last_write = -float("inf")
        self._last_poll = -float("inf")

    def progress(self, report: Any) -> None:
        """Store an effdet `train.Progress`; drops reports closer than interval_s apart except the last.
        Best effort: a database hiccup loses one report, never the training run."""
        now = time.monotonic()
        final = report.step >= report.total_steps
        if now - self._last_write < self.interval_s and not final:
            return
        self._last_write = now
        data = report.model_dump(mode="json")
        try:
            with session_scope() as session:
                result = session.execute(
                    update(Job)
                    .where(held(self.job_id, self.holder))
                    .values(progress=data, heartbeat_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
                if not result.rowcount:  # type: ignore[attr-defined]
                    self.lost = True
                    return
                session.add(JobEvent(job_id=self.job_id, kind="progress", data=data))
        except Exception:
            log.warning("job %s: progress write failed", self.job_id, exc_info=True)

    def should_stop(self) -> bool:
        """True once the user asked to cancel or another worker owns the job."""
        if self.lease_lost is not None and self.lease_lost.is_set():
            self.lost = True
        if self.cancelled or self.lost:
            return True
        now = time.monotonic()
        if now - self._last_poll < CANCEL_POLL_S:
            return False
        self._last_poll = now
        try:
            with session_scope() as session:
                row = session.execute(select(Job.cancel_requested, Job.worker).where(Job.id == self.job_id)).first()
        except Exception:  # unreadable for now: keep training, ask again at the next poll
            log.warning("job %s: cancel poll failed", self.job_id, exc_info=True)
            return False
        if row is None or row.worker != self.holder:
            self.lost = True
        elif row.cancel_requested:
            self.cancelled = True
        return self.cancelled or self.lost

    def check(self) -> None:
        """Between phases: raise LeaseLostError if the job is no longer ours (cancellation is read by the caller)."""
        self.should_stop()
        if self.lost:
            raise LeaseLostError(f"job {self.job_id} is no longer held by {self.holder}")


class DatasetProgress:
    """Conversion progress of one dataset, `{"done", "total"}`, written at most every DATASET_PROGRESS_S;
    each write also marks the dataset as alive (updated_at) for the recovery sweep, and `touch` does so
    between reports (the heartbeat calls it)."""

    def __init__(self, dataset_id: str) -> None:
        self.dataset_id = dataset_id
        self.done, self.total = 0, 0
        self._last = -float("inf")

    def write(self, done: int, total: int) -> None:
        """Store the numbers (only while the dataset is still validating)."""
        with session_scope() as session:
            session.execute(
                update(Dataset)
                .where(Dataset.id == self.dataset_id, Dataset.status == DatasetStatus.validating.value)
                .values(progress={"done": done, "total": total})
                .execution_options(synchronize_session=False)
            )

    def touch(self) -> bool:
        """Rewrite the latest numbers: keeps updated_at fresh during long steps without reports."""
        self.write(self.done, self.total)
        return True

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        now = time.monotonic()
        if now - self._last < DATASET_PROGRESS_S and done < total:
            return
        self._last = now
        try:
            self.write(done, total)
        except Exception:  # progress is best effort; the conversion itself must not fail for it
            log.warning("dataset %s: progress write failed", self.dataset_id, exc_info=True)
