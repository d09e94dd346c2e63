"""Liveness, readiness (database and broker reachable) and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse, Response
from kombu import Connection
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import Engine, text
from starlette.concurrency import run_in_threadpool

from app.auth import CurrentOwner
from app.deps import EngineDep, SessionDep, SettingsDep
from app.metrics import render
from app.schemas import AUTH_RESPONSES, Health, Readiness
from core.db import migrate
from core.settings import Settings
from core.store import get_store

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_S = 3.0


@router.get("/healthz")
def healthz() -> Health:
    """Liveness: always 200 while the process serves requests."""
    return Health()


def _check_database(request: Request, engine: Engine) -> str:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    if not request.app.state.migrated:
        migrate(request.app.state.settings.resolved_database_url)
        request.app.state.migrated = True
    return "ok"


def _check_store(settings: Settings) -> str:
    if settings.storage_url is None:
        return "data dir"
    get_store(settings).get_text(".readyz")  # any answer, even "no such object", means the bucket is reachable
    return "ok"


def _check_broker(url: str) -> str:
    with Connection(url, connect_timeout=CHECK_TIMEOUT_S) as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=CHECK_TIMEOUT_S)
    return "ok"


async def _probe(check: object, *args: object) -> str:
    """'ok', or the reason the check failed or timed out."""
    try:
        return str(await asyncio.wait_for(run_in_threadpool(check, *args), CHECK_TIMEOUT_S + 1))  # type: ignore[arg-type]
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT_S + 1:.0f} s"
    except Exception as err:
        return f"{type(err).__name__}: {err}"


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "the database or the broker is down"}},
)
async def readyz(request: Request, engine: EngineDep, settings: SettingsDep) -> Readiness | JSONResponse:
    """Readiness: 200 when the database, the broker and the store answer, 503 naming the one that does not."""
    database, broker, store = await asyncio.gather(
        _probe(_check_database, request, engine),
        _probe(_check_broker, settings.resolved_broker_url),
        _probe(_check_store, settings),
    )
    ready = database == "ok" and broker == "ok" and store in ("ok", "data dir")
    body = Readiness(status="ready" if ready else "unavailable", database=database, broker=broker, store=store)
    if ready:
        return body
    return JSONResponse(body.model_dump(), status_code=status.HTTP_503_SERVICE_UNAVAILABLE)


@router.get(
    "/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, **AUTH_RESPONSES}
)
def metrics(session: SessionDep, _owner: CurrentOwner) -> Response:
    """Prometheus metrics: requests and latency by route, jobs by state, predict latency."""
    return Response(render(session), media_type=CONTENT_TYPE_LATEST)
