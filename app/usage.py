"""What an owner holds and runs: counts of its resources and the bytes of its uploads (GET /v1/usage)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth import owned
from app.limits import active_jobs, stored_bytes
from app.schemas import Limits, Usage
from core.settings import Settings
from core.tables import Dataset, Evaluation, Job, ModelVersion


def usage_of(session: Session, settings: Settings, owner: str | None) -> Usage:
    """One owner's usage (everything when auth is off and owner is None) and the limits on it."""

    def count(table: type[Dataset | Job | ModelVersion | Evaluation]) -> int:
        return session.scalar(owned(select(func.count()).select_from(table), table, owner)) or 0

    return Usage(
        owner=owner,
        datasets=count(Dataset),
        upload_bytes=stored_bytes(session, owner),
        jobs=count(Job),
        active_jobs=active_jobs(session, owner),
        models=count(ModelVersion),
        evaluations=count(Evaluation),
        limits=Limits(
            active_jobs=settings.max_active_jobs,
            stored_bytes=settings.max_stored_bytes,
            predict_rps=settings.predict_rps,
        ),
    )


def owners(session: Session) -> list[str]:
    """Every owner that holds a resource, sorted."""
    found: set[str] = set()
    for table in (Dataset, Job, ModelVersion, Evaluation):
        found.update(o for o in session.scalars(select(table.owner).distinct()) if o is not None)
    return sorted(found)
