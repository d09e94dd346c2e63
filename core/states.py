"""Every state change of jobs and datasets, with the events that log it: the one place that writes `Job`,
`JobEvent` and `Dataset` rows, for the API (submit, cancel, delete) and the worker (claim, progress, finish).

A running job is held through a lease: `Job.worker` ("hostname:pid") plus `Job.heartbeat_at`. It is taken with
one conditional UPDATE (atomic on SQLite and PostgreSQL alike), kept fresh by `renew`, and every later write of
the holder is conditional on still holding it (`held`), so a worker that lost its lease changes nothing. Dataset
writes of the worker are conditional on the dataset still validating, so a duplicate delivery finishes once.
Functions that take a `session` are the API's (the route commits through them); the others open their own.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session

from core.db import session_scope, transaction_lock
from core.tables import FINISHED, Dataset, DatasetStatus, Job, JobEvent, JobStatus, ModelVersion, utcnow

UNCLAIMED_MESSAGE = "no worker took the job yet; it is sent to the queue again (its message may have been lost)"


class LeaseLostError(RuntimeError):
    """Another worker took the job over (this one was silent longer than the lease); stop touching it."""


def _changed(result: Any) -> int:
    """Rows an UPDATE matched."""
    return int(result.rowcount)


def _state_event(job_id: str, status: JobStatus | str, **extra: Any) -> JobEvent:
    return JobEvent(job_id=job_id, kind="state", data={"status": str(status), **extra})


def add_event(job_id: str, kind: str, data: dict[str, Any]) -> None:
    """Append one event to the job's log (state, progress, log or metrics)."""
    with session_scope() as session:
        session.add(JobEvent(job_id=job_id, kind=kind, data=data))


# Jobs, from the API.


def queue_job(*, session: Session, job: Job, warnings: list[str] | None = None) -> Job:
    """Store a validated job as queued (with its first event and the warnings found when it was resolved); the
    caller sends it to the queue afterwards."""
    job.status, job.cancel_requested, job.attempts = JobStatus.queued, False, 0
    job.warnings = list(warnings) if warnings else None
    session.add(job)
    session.flush()
    session.add(_state_event(job.id, JobStatus.queued))
    session.commit()
    return job


def fail_unsent_job(*, session: Session, job: Job, error: str) -> None:
    """End a job whose queue message could not be sent."""
    job.status, job.error, job.finished_at = JobStatus.failed, error, utcnow()
    session.add(_state_event(job.id, JobStatus.failed, error=error))
    session.commit()


def cancel_job(*, session: Session, job: Job, keep_model: bool = False) -> bool:
    """Cancel an unfinished job: a queued one ends at once (True), a running one is asked to stop (False), or with
    `keep_model` to finish training now and export the model from the weights so far."""
    cancelled = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == JobStatus.queued)
        .values(status=JobStatus.cancelled, cancel_requested=True, finished_at=utcnow())
    )
    now = _changed(cancelled) == 1
    if now:
        session.add(_state_event(job.id, JobStatus.cancelled))
    elif keep_model:
        session.execute(update(Job).where(Job.id == job.id).values(finish_requested=True))
        message = "asked to finish now: training ends at its next step and the model is exported from those weights"
        session.add(JobEvent(job_id=job.id, kind="log", data={"message": message}))
    else:
        session.execute(update(Job).where(Job.id == job.id).values(cancel_requested=True))
        session.add(JobEvent(job_id=job.id, kind="log", data={"message": "cancellation requested"}))
    session.commit()
    session.refresh(job)
    return now


# Jobs, from the worker.


def cancel_queued(job_id: str) -> None:
    """End a job that was cancelled before any worker started it (it never trains)."""
    with session_scope() as session:
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.queued.value)
            .values(status=JobStatus.cancelled.value, finished_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if _changed(result):
            session.add(_state_event(job_id, JobStatus.cancelled))


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


def claim(job_id: str, holder: str, lease_s: float) -> int | None:
    """Take the job's lease and move it to training; returns the attempt number, or None when it is held by a
    live worker or finished. One statement, so two workers racing for it cannot both win."""
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
        if _changed(result) != 1:
            return None
        session.add(_state_event(job_id, JobStatus.training, worker=holder, attempt=current.attempts + 1))
        return current.attempts + 1


def held(job_id: str, holder: str) -> ColumnElement[bool]:
    """SQL condition for the holder's writes: the job is still ours."""
    return and_(Job.id == job_id, Job.worker == holder)


def _update_held(job_id: str, holder: str, session: Session, **values: Any) -> None:
    """Write columns of a job we hold; LeaseLostError when it is no longer ours."""
    result = session.execute(
        update(Job).where(held(job_id, holder)).values(**values).execution_options(synchronize_session=False)
    )
    if not _changed(result):
        raise LeaseLostError(f"job {job_id} is no longer held by {holder}")


def renew(job_id: str, holder: str) -> bool:
    """Refresh the heartbeat; False when the lease was taken by someone else."""
    with session_scope() as session:
        try:
            _update_held(job_id, holder, session, heartbeat_at=utcnow())
        except LeaseLostError:
            return False
        return True


def set_state(job_id: str, holder: str, status: JobStatus, **values: Any) -> None:
    """Move a job we hold to `status` (with extra column values) and log a state event, in one transaction;
    raises LeaseLostError when the job is no longer ours."""
    with session_scope() as session:
        _update_held(job_id, holder, session, status=status.value, heartbeat_at=utcnow(), **values)
        extra = {"error": values["error"]} if values.get("error") else {}
        session.add(_state_event(job_id, status, worker=holder, **extra))


def fail(job_id: str, holder: str, error: str) -> None:
    """End a job we hold as failed, with the error its user reads."""
    set_state(job_id, holder, JobStatus.failed, error=error, finished_at=utcnow())


def cancelled(job_id: str, holder: str) -> None:
    """End a job we hold as cancelled (the user asked)."""
    set_state(job_id, holder, JobStatus.cancelled, finished_at=utcnow())


def anchors_chosen(job_id: str, holder: str, config: dict[str, Any], choice: dict[str, Any], message: str) -> None:
    """Store the config whose 'auto' anchors were chosen on the training boxes as the job's config (a resumed
    attempt trains with the same numbers) and log the choice as an event, in one transaction."""
    with session_scope() as session:
        _update_held(job_id, holder, session, config=config, heartbeat_at=utcnow())
        session.add(JobEvent(job_id=job_id, kind="log", data={"message": message, "anchors": choice}))


def record_progress(job_id: str, holder: str, data: dict[str, Any]) -> bool:
    """Store a progress report as the job's progress and as an event (renewing the lease); False when the job
    is no longer ours."""
    with session_scope() as session:
        try:
            _update_held(job_id, holder, session, progress=data, heartbeat_at=utcnow())
        except LeaseLostError:
            return False
        session.add(JobEvent(job_id=job_id, kind="progress", data=data))
        return True


class JobControl(NamedTuple):
    """What the user asked of a running job, and who holds it."""

    cancel: bool
    finish: bool
    worker: str | None


def control(job_id: str) -> JobControl | None:
    """What a running job's worker polls, or None for a deleted job."""
    with session_scope() as session:
        row = session.execute(
            select(Job.cancel_requested, Job.finish_requested, Job.worker).where(Job.id == job_id)
        ).first()
    return None if row is None else JobControl(bool(row.cancel_requested), bool(row.finish_requested), row.worker)


def reserve_model_id(job_id: str, holder: str) -> str:
    """Choose the model id before exporting and store it, so a resumed attempt reuses the same folder."""
    model_id = uuid.uuid4().hex
    with session_scope() as session:
        _update_held(job_id, holder, session, model_id=model_id)
    return model_id


def succeed(
    job: Job, holder: str, model_id: str, path: str, metrics: dict[str, Any] | None, labels: dict[str, str]
) -> None:
    """Create the model version (previous max for owner + variant, plus one) and end the job succeeded, in one
    transaction, so a model exists exactly when its job succeeded."""
    now = utcnow()
    with session_scope() as session:
        transaction_lock(session, f"model-version:{job.owner}:{job.model_name}")  # racing jobs get distinct versions
        _update_held(
            job.id,
            holder,
            session,
            status=JobStatus.succeeded.value,
            model_id=model_id,
            finished_at=now,
            heartbeat_at=now,
        )
        previous = session.scalar(
            select(func.max(ModelVersion.version)).where(
                ModelVersion.owner.is_(None) if job.owner is None else ModelVersion.owner == job.owner,
                ModelVersion.name == job.model_name,
            )
        )
        session.add(
            ModelVersion(
                id=model_id,
                owner=job.owner,
                job_id=job.id,
                name=job.model_name,
                version=(previous or 0) + 1,
                path=path,
                metrics=metrics,
                label_map=labels,
            )
        )
        session.add(_state_event(job.id, JobStatus.succeeded, worker=holder, model_id=model_id))


def release_or_fail(job: Job, now: datetime, max_attempts: int) -> JobEvent | None:
    """Release a dead holder's lease so the job can run again (a "log" event), or fail it after `max_attempts`
    starts (a "state" event); returns the event written, or None when a worker took the job meanwhile."""
    with session_scope() as session:
        same = (Job.id == job.id, Job.status == job.status, Job.attempts == job.attempts)
        holder = Job.worker.is_(None) if job.worker is None else Job.worker == job.worker
        if job.attempts >= max_attempts:
            error = (
                f"the worker running this job stopped {job.attempts} times (last: {job.worker}); it may run out "
                "of memory: lower batch_size or image_size, or freeze the backbone; see the job logs"
            )
            values: dict[str, Any] = {"status": JobStatus.failed.value, "error": error, "finished_at": now}
            event = _state_event(job.id, JobStatus.failed, error=error)
        else:
            values = {"worker": None, "heartbeat_at": now}
            message = f"worker {job.worker or '(re-queued)'} stopped responding; the job is re-queued"
            event = JobEvent(job_id=job.id, kind="log", data={"message": message})
        result = session.execute(
            update(Job).where(*same, holder).values(**values).execution_options(synchronize_session=False)
        )
        if not _changed(result):
            return None
        session.add(event)
    return event


def mark_unclaimed_jobs(now: datetime, cutoff: datetime) -> list[str]:
    """Queued jobs no worker took since `cutoff` (submission or the last re-send); each is stamped re-sent
    (heartbeat_at) by a conditional update, so one sweeper sends it once. The caller sends them."""
    chosen: list[str] = []
    with session_scope() as session:
        rows = session.execute(
            select(Job.id, Job.created_at, Job.heartbeat_at).where(
                Job.status == JobStatus.queued.value, Job.worker.is_(None)
            )
        ).all()
        for job_id, created_at, heartbeat_at in rows:
            sent = aware(heartbeat_at) or aware(created_at)
            if sent is None or sent >= cutoff:
                continue
            same = Job.heartbeat_at.is_(None) if heartbeat_at is None else Job.heartbeat_at == heartbeat_at
            result = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.queued.value, Job.worker.is_(None), same)
                .values(heartbeat_at=now)
                .execution_options(synchronize_session=False)
            )
            if _changed(result):
                session.add(JobEvent(job_id=job_id, kind="log", data={"message": UNCLAIMED_MESSAGE}))
                chosen.append(job_id)
    return chosen


def aware(moment: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes for timezone columns; they were written in UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=utcnow().tzinfo)


# Datasets.


def add_dataset(*, session: Session, dataset: Dataset) -> None:
    """Store an accepted upload as validating; the caller sends it to the queue afterwards."""
    dataset.status = DatasetStatus.validating
    session.add(dataset)
    session.commit()


def relabel_dataset(
    *, session: Session, dataset: Dataset, class_aliases: dict[str, str] | None, label_map: dict[int, str] | None
) -> bool:
    """Send a ready or failed dataset back to validating with new class aliases and label map (what its
    conversion found is cleared); False, writing nothing, when it is validating or a queued or running job
    uses it. One conditional UPDATE, so a job submitted meanwhile and a re-label cannot both win. The caller
    removes the old records and sends the conversion afterwards."""
    in_use = select(Job.id).where(Job.dataset_id == dataset.id, Job.status.not_in([s.value for s in FINISHED]))
    result = session.execute(
        update(Dataset)
        .where(
            Dataset.id == dataset.id,
            Dataset.status.in_([DatasetStatus.ready.value, DatasetStatus.failed.value]),
            ~in_use.exists(),
        )
        .values(
            status=DatasetStatus.validating.value,
            class_aliases=class_aliases or None,
            requested_label_map={str(k): v for k, v in label_map.items()} if label_map else None,
            num_images=None,
            num_boxes=None,
            label_map=None,
            report=None,
            progress=None,
            error=None,
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    session.refresh(dataset)
    return bool(_changed(result))


def delete_dataset(*, session: Session, dataset: Dataset) -> None:
    """Delete a dataset's row (its files are the caller's to remove)."""
    session.delete(dataset)
    session.commit()


def _update_validating(dataset_id: str, **values: Any) -> bool:
    """Write columns of a dataset that is still validating (a duplicate attempt may have finished it first);
    True when this call wrote them. Every write also refreshes updated_at, which marks the conversion alive."""
    with session_scope() as session:
        result = session.execute(
            update(Dataset)
            .where(Dataset.id == dataset_id, Dataset.status == DatasetStatus.validating.value)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(_changed(result))


def dataset_progress(dataset_id: str, done: int, total: int) -> None:
    """Store a conversion's progress, `{"done", "total"}` images."""
    _update_validating(dataset_id, progress={"done": done, "total": total})


def dataset_ready(dataset_id: str, num_images: int, num_boxes: int, label_map: dict[str, str], report: Any) -> bool:
    """End a conversion: the dataset is ready with its counts, label map and report (a JSON document)."""
    return _update_validating(
        dataset_id,
        status=DatasetStatus.ready.value,
        num_images=num_images,
        num_boxes=num_boxes,
        label_map=label_map,
        report=report,
        progress={"done": num_images, "total": num_images},
        error=None,
    )


def dataset_failed(dataset_id: str, error: str, report: dict[str, Any] | None = None) -> bool:
    """End a conversion as failed, with the error its user reads (and the problems found, when any)."""
    return _update_validating(dataset_id, status=DatasetStatus.failed.value, error=error, report=report)


def claim_stalled_datasets(silent: datetime, unclaimed: datetime, idle: bool) -> list[str]:
    """Validating datasets whose conversion started (progress set) and went silent since `silent`, or (when
    `idle`) never started since `unclaimed`; progress is cleared and updated_at stamped by a conditional
    update, so one sweeper sends each once. The caller sends them."""
    chosen: list[str] = []
    with session_scope() as session:
        rows = session.scalars(select(Dataset).where(Dataset.status == DatasetStatus.validating.value)).all()
        for dataset in rows:
            updated = aware(dataset.updated_at)
            if dataset.progress is None and not idle:
                continue
            if updated is not None and updated < (silent if dataset.progress is not None else unclaimed):
                result = session.execute(
                    update(Dataset)
                    .where(Dataset.id == dataset.id, Dataset.updated_at == dataset.updated_at)
                    .values(progress=None)
                    .execution_options(synchronize_session=False)
                )
                if _changed(result):
                    chosen.append(dataset.id)
    return chosen
