"""Deleting datasets, jobs, models and evaluations so that nothing is left half-deleted: the rows (with what
depends on them) are first marked, which hides them from every lookup and listing; then their files go; then the
rows. A crash between the steps leaves marked rows, and the worker's recovery sweep finishes them (`purge_marked`).
What else a crash leaves is dropped here too: partial uploads and expired Idempotency-Key records.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.orm import Session

from core.db import session_scope
from core.evaluations import ENDED
from core.layout import dataset_dir, evaluation_dir, run_dir, uploads_dir
from core.settings import Settings
from core.store import (
    dataset_input_prefix,
    evaluation_prefix,
    model_prefix,
    records_prefix,
    run_prefix,
    unshare,
)
from core.tables import (
    FINISHED,
    IDEMPOTENCY_WINDOW,
    Dataset,
    DatasetStatus,
    Evaluation,
    IdempotentRequest,
    Job,
    JobEvent,
    ModelVersion,
    Webhook,
    WebhookDelivery,
    utcnow,
)

Deletable = Dataset | Job | ModelVersion | Evaluation


class DeletionRefusedError(Exception):
    """The resource cannot be deleted now; the message says what to do first."""


def remove(path: Path) -> None:
    """Delete a file or folder if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _evaluations(session: Session, condition: ColumnElement[bool]) -> list[Evaluation]:
    return list(session.scalars(select(Evaluation).where(condition, Evaluation.deleted_at.is_(None))))


def _active_evaluations(evaluations: Sequence[Evaluation]) -> str | None:
    busy = [row.id for row in evaluations if row.status not in ENDED]
    return f"evaluation(s) {', '.join(busy)} are running on it; cancel them first" if busy else None


def plan(session: Session, row: Deletable) -> list[Deletable]:
    """The rows deleting `row` removes (it last), or DeletionRefusedError when something still runs or depends on it.
    A model takes its evaluations with it, a dataset the evaluations run on it; a job keeps its model (delete
    that first) and a dataset its jobs."""
    if isinstance(row, Evaluation):
        if row.status not in ENDED:
            raise DeletionRefusedError(f"the evaluation is {row.status}; cancel it first (POST .../cancel)")
        return [row]
    if isinstance(row, ModelVersion):
        evaluations = _evaluations(session, Evaluation.model_id == row.id)
        if refused := _active_evaluations(evaluations):
            raise DeletionRefusedError(refused)
        return [*evaluations, row]
    if isinstance(row, Job):
        if row.status not in FINISHED:
            raise DeletionRefusedError(f"the job is {row.status}; cancel it first (POST /v1/jobs/{row.id}/cancel)")
        models = session.scalars(
            select(ModelVersion.id).where(ModelVersion.job_id == row.id, ModelVersion.deleted_at.is_(None))
        ).all()
        if models:
            ids = ", ".join(models)
            raise DeletionRefusedError(
                f"the job made model(s) {ids}, kept until you delete them (DELETE /v1/models/ID)"
            )
        return [row]
    if row.status == DatasetStatus.validating:
        raise DeletionRefusedError("the dataset is being validated; delete it when that ends")
    jobs = session.scalars(select(Job.id).where(Job.dataset_id == row.id, Job.deleted_at.is_(None))).all()
    if jobs:
        raise DeletionRefusedError(
            f"{len(jobs)} job(s) use this dataset; delete them (DELETE /v1/jobs/ID), then the dataset"
        )
    evaluations = _evaluations(session, Evaluation.dataset_id == row.id)
    if refused := _active_evaluations(evaluations):
        raise DeletionRefusedError(refused)
    return [*evaluations, row]


def files_of(settings: Settings, row: Deletable) -> Path:
    """The folder that holds a row's files."""
    if isinstance(row, Evaluation):
        return evaluation_dir(settings, row.id)
    if isinstance(row, ModelVersion):
        return Path(row.path)
    if isinstance(row, Job):
        return run_dir(settings, row.id)
    return dataset_dir(settings, row.id)


def prefixes_of(row: Deletable) -> list[str]:
    """The trees that hold a row's files in a bucket store."""
    if isinstance(row, Evaluation):
        return [evaluation_prefix(row.id)]
    if isinstance(row, ModelVersion):
        return [model_prefix(row.id)]
    if isinstance(row, Job):
        return [run_prefix(row.id)]
    return [dataset_input_prefix(row.id), records_prefix(row.id)]


def mark(session: Session, rows: Sequence[Deletable]) -> None:
    """Hide the rows from every lookup (step one of a deletion); a model's job forgets it."""
    now = utcnow()
    for row in rows:
        row.deleted_at = now
        if isinstance(row, ModelVersion):
            session.execute(update(Job).where(Job.model_id == row.id).values(model_id=None))
    session.commit()


def purge(session: Session, settings: Settings, rows: Sequence[Deletable]) -> None:
    """Remove marked rows' files, then the rows, in order (dependents first), with the callbacks that follow them."""
    for row in rows:
        remove(files_of(settings, row))
        for prefix in prefixes_of(row):
            unshare(settings, prefix)
    followed = Webhook.resource_id.in_([row.id for row in rows])
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id.in_(select(Webhook.id).where(followed))))
    session.execute(delete(Webhook).where(followed))
    for row in rows:
        if isinstance(row, Job):
            session.execute(delete(JobEvent).where(JobEvent.job_id == row.id))
        session.delete(row)
    session.commit()


def delete_now(session: Session, settings: Settings, row: Deletable) -> None:
    """Delete a resource with what depends on it: plan (may refuse), mark, remove files, remove rows."""
    rows = plan(session, row)
    mark(session, rows)
    purge(session, settings, rows)


ORDER: tuple[type[Deletable], ...] = (Evaluation, ModelVersion, Job, Dataset)
"""Dependents before what they depend on, so each row's delete meets no foreign key."""


def drop_stale_uploads(settings: Settings) -> int:
    """Remove the partial uploads that a killed API process left (nothing written for `stale_upload_s`; a live
    upload writes as it streams); the count removed."""
    cutoff = utcnow().timestamp() - settings.stale_upload_s
    stale = [part for part in uploads_dir(settings).glob("*.part") if part.stat().st_mtime < cutoff]
    for part in stale:
        part.unlink(missing_ok=True)
    return len(stale)


def drop_expired_requests() -> int:
    """Drop the Idempotency-Key records older than the window they answer retries in; the count dropped."""
    with session_scope() as session:
        expired = delete(IdempotentRequest).where(IdempotentRequest.created_at < utcnow() - IDEMPOTENCY_WINDOW)
        return int(session.execute(expired).rowcount)  # type: ignore[attr-defined]


def purge_marked(settings: Settings, older_than: timedelta) -> int:
    """Finish the deletions a crash interrupted: every row marked before `older_than` ago; the count finished."""
    cutoff = utcnow() - older_than
    done = 0
    for table in ORDER:
        with session_scope() as session:
            marked = select(table).where(table.deleted_at.is_not(None), table.deleted_at < cutoff)
            rows: list[Deletable] = list(session.scalars(marked))
            purge(session, settings, rows)
            done += len(rows)
    return done
