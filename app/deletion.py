"""DELETE on a resource the caller owns: 404 when it is not theirs, 409 with what to do first when it is busy or
still needed, else it and what depends on it are removed (core.deletion: mark, files, rows)."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import HTTPException, status
from sqlalchemy.orm import Session

from app.auth import get_owned
from app.schemas import ErrorDetail
from core.deletion import DeletionRefusedError, delete_now
from core.settings import Settings
from core.tables import Dataset, Evaluation, Job, ModelVersion

Marked = TypeVar("Marked", Dataset, Job, ModelVersion, Evaluation)
"""What is deleted through core.deletion (marked, then files, then rows); webhooks are deleted outright."""

DELETE_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail},
    409: {
        "model": ErrorDetail,
        "description": "busy (cancel it first) or still needed by another resource (delete that first)",
    },
}
"""The answers of every DELETE that goes through core.deletion, for the OpenAPI document."""


def delete_owned(session: Session, settings: Settings, table: type[Marked], row_id: str, owner: str | None) -> None:
    """Delete the owner's row with this id and its files."""
    row = get_owned(session, table, row_id, owner)
    try:
        delete_now(session, settings, row)
    except DeletionRefusedError as err:
        raise HTTPException(status.HTTP_409_CONFLICT, str(err)) from None
