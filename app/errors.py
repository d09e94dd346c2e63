"""Faults of the services under the API, as answers a client can act on instead of a 500: an unreachable
database is a 503 (try again shortly), a full data volume a 507 (free space). The worker uses `is_disk_full`
and `disk_full_message` too, so a job or a conversion that hits a full disk fails with the same advice."""

from __future__ import annotations

import errno
import logging

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

log = logging.getLogger(__name__)

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
DISK_FULL_TEXTS = ("no space left on device", "database or disk is full", "disk quota exceeded")
"""How a full disk reads in messages that carry no errno: TensorFlow's file writes, SQLite, PostgreSQL."""
POSTGRES_DISK_FULL = "53100"
"""PostgreSQL's SQLSTATE disk_full."""

UNAVAILABLE = "the database is unavailable; try again shortly (GET /readyz tells when it is back)"


def is_disk_full(exc: BaseException) -> bool:
    """True when exc, or an exception it was raised from, says the disk (or the quota) is full."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return True
        if getattr(current, "sqlstate", None) == POSTGRES_DISK_FULL:
            return True
        if any(text in str(current).lower() for text in DISK_FULL_TEXTS):
            return True
        if isinstance(current, DBAPIError) and isinstance(current.orig, BaseException):
            current = current.orig
        else:
            current = current.__cause__ or current.__context__
    return False


def disk_full_message(doing: str, retry: str) -> str:
    """What a user reads when the data volume filled up while `doing` something, ending with how to `retry`."""
    return (
        f"no space left on the data volume (EFFDET_DATA_DIR) while {doing}; free space there (delete datasets, "
        f"runs or models you no longer need), then {retry}"
    )


def disk_full_response() -> JSONResponse:
    """507 Insufficient Storage with what to do."""
    detail = disk_full_message("storing this request's data", "try again")
    return JSONResponse({"detail": detail}, status_code=status.HTTP_507_INSUFFICIENT_STORAGE)


async def database_error(_request: Request, exc: Exception) -> JSONResponse:
    """503 when the database cannot be reached (down, restarting, pool exhausted); 507 when its disk is full."""
    if is_disk_full(exc):
        log.error("database disk full: %s", exc)
        return disk_full_response()
    log.warning("database unavailable: %s", exc)
    return JSONResponse({"detail": UNAVAILABLE}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)


async def storage_error(_request: Request, exc: Exception) -> JSONResponse:
    """507 for a write that found the data volume full; any other OSError stays the server error it is."""
    if not is_disk_full(exc):
        raise exc
    log.error("data volume full: %s", exc)
    return disk_full_response()


def register_error_handlers(app: FastAPI) -> None:
    """Install the handlers on the app (its routes then never answer 500 for these faults)."""
    for database_fault in (OperationalError, InterfaceError, PoolTimeoutError):
        app.add_exception_handler(database_fault, database_error)
    app.add_exception_handler(OSError, storage_error)
