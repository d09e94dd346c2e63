"""Progress recorders: what a running task tells the database, throttled so SQLite stays cheap.

One JSON shape per resource: a dataset's progress is `{"done", "total"}`; a job's is effdet's
`train.Progress` (step, total_steps, loss, learning_rate, images_per_sec, eta_seconds, ...), also appended
to the job's event log as `JobEvent(kind="progress")`. Job writes are conditional on holding the lease.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from core import states
from core.states import LeaseLostError

log = logging.getLogger(__name__)

CANCEL_POLL_S = 1.0
"""Seconds between two reads of `Job.cancel_requested` while training."""

DATASET_PROGRESS_S = 1.0
"""Seconds between two writes of a dataset's conversion progress."""


class JobRecorder:
    """The training callbacks of one job: `progress` (throttled row + event, renews the lease), `should_stop`
    (cancel requested or lease lost) and `should_finish` (asked to finish now and keep the model); the database is
    polled at most every CANCEL_POLL_S."""

    def __init__(self, job_id: str, holder: str, interval_s: float, lease_lost: Any = None) -> None:
        self.job_id, self.holder, self.interval_s = job_id, holder, interval_s
        self.lease_lost = lease_lost  # a threading.Event set by the heartbeat, or None
        self.cancelled = False
        self.finishing = False
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
        try:
            if not states.record_progress(self.job_id, self.holder, report.model_dump(mode="json", exclude_none=True)):
                self.lost = True
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
            row = states.control(self.job_id)
        except Exception:  # unreadable for now: keep training, ask again at the next poll
            log.warning("job %s: cancel poll failed", self.job_id, exc_info=True)
            return False
        if row is None or row.worker != self.holder:
            self.lost = True
        else:
            self.cancelled, self.finishing = row.cancel, row.finish
        return self.cancelled or self.lost

    def should_finish(self) -> bool:
        """True once the user asked the job to finish now and keep the model (read at the last poll)."""
        return self.finishing

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
        states.dataset_progress(self.dataset_id, done, total)

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
