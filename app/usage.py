"""What an owner holds and runs: counts of its resources and the bytes of its uploads (GET /v1/usage)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth import owned
from app.schemas import Usage
from core.tables import FINISHED, Dataset, Evaluation, Job, ModelVersion


def usage_of(session: Session, owner: str | None) -> Usage:
    """One owner's usage (everything when auth is off and owner is None)."""

    def count(table: type[Dataset | Job | ModelVersion | Evaluation]) -> int:
        return session.scalar(owned(select(func.count()).select_from(table), table, owner)) or 0

    upload = owned(select(func.coalesce(func.sum(Dataset.upload_bytes), 0)), Dataset, owner)
    active = owned(select(func.count()).select_from(Job), Job, owner).where(
        Job.status.not_in([state.value for state in FINISHED])
    )
    return Usage(
        owner=owner,
        datasets=count(Dataset),
        upload_bytes=int(session.scalar(upload) or 0),
        jobs=count(Job),
        active_jobs=session.scalar(active) or 0,
        models=count(ModelVersion),
        evaluations=count(Evaluation),
    )


def owners(session: Session) -> list[str]:
    """Every owner that holds a resource, sorted."""
    found: set[str] = set()
    for table in (Dataset, Job, ModelVersion, Evaluation):
        found.update(o for o in session.scalars(select(table.owner).distinct()) if o is not None)
    return sorted(found)
