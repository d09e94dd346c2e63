"""Faults of the services under the API, as answers a client can act on instead of a 500: an unreachable
database is a 503 (try again shortly), a full data volume a 507 (free space, in `core.disk`'s words)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from obstore.exceptions import BaseError as StoreError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from core.disk import disk_full_message, is_disk_full

log = logging.getLogger(__name__)

UNAVAILABLE = "the database is unavailable; try again shortly (GET /readyz tells when it is back)"
STORE_UNAVAILABLE = (
    "the artefact store is unreachable or refused the request; try again shortly (GET /readyz tells when it is back)"
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


async def store_error(_request: Request, exc: Exception) -> JSONResponse:
    """503 when the S3 artefact store cannot be reached or refuses (down, wrong credentials, no bucket)."""
    log.warning("artefact store unavailable: %s", exc)
    return JSONResponse({"detail": STORE_UNAVAILABLE}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)


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
    app.add_exception_handler(StoreError, store_error)
