"""Jobs: submit (validated in full before queueing), list, show, follow as server-sent events, logs, cancel."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.auth import CurrentOwner, get_owned, owned
from app.deps import EngineDep, SessionDep, SettingsDep
from app.jobspec import JobSpecError, resolve_job
from app.models import FINISHED, Dataset, Job, JobEvent, JobStatus, utcnow
from app.schemas import ErrorDetail, JobCreate, JobEventPublic, JobPublic, JobsPublic
from app.storage import train_log
from worker.queue import send_job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
EVENT_PAGE = 500


def _state_event(job_id: str, state: JobStatus, **extra: object) -> JobEvent:
    return JobEvent(job_id=job_id, kind="state", data={"status": state.value, **extra})


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    responses={422: {"model": ErrorDetail, "description": "every problem of the submission, one per entry"}},
)
def create_job(body: JobCreate, session: SessionDep, settings: SettingsDep, owner: CurrentOwner) -> JobPublic:
    """Submit a fine-tuning job; it is queued once dataset, model, hyperparameters and checkpoint all check out."""
    dataset = session.get(Dataset, body.dataset_id)
    if dataset is not None and owner is not None and dataset.owner != owner:
        dataset = None
    try:
        resolved = resolve_job(body, dataset, settings)
    except JobSpecError as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, err.problems) from None
    job = Job(
        owner=owner,
        dataset_id=body.dataset_id,
        model_name=body.model,
        status=JobStatus.queued,
        config=resolved.config,
        options=resolved.options,
        cancel_requested=False,
        attempts=0,
    )
    session.add(job)
    session.flush()
    session.add(_state_event(job.id, JobStatus.queued))
    session.commit()
    try:
        send_job(job.id)
    except Exception as err:
        job.status, job.error, job.finished_at = JobStatus.failed, f"the job queue is unreachable: {err}", utcnow()
        session.add(_state_event(job.id, JobStatus.failed, error=job.error))
        session.commit()
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"the job queue is unreachable ({err}); submit again later"
        ) from err
    return JobPublic.from_row(job)


@router.get("")
def list_jobs(
    session: SessionDep,
    owner: CurrentOwner,
    job_status: Annotated[JobStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobsPublic:
    """Your jobs, newest first (optionally only those in one state)."""
    count_query = owned(select(func.count()).select_from(Job), Job, owner)
    query = owned(select(Job), Job, owner)
    if job_status is not None:
        count_query, query = count_query.where(Job.status == job_status), query.where(Job.status == job_status)
    rows = session.scalars(query.order_by(Job.created_at.desc()).limit(limit).offset(offset))
    return JobsPublic(items=[JobPublic.from_row(row) for row in rows], count=session.scalar(count_query) or 0)


@router.get("/{job_id}", responses={404: {"model": ErrorDetail}})
def get_job(job_id: str, session: SessionDep, owner: CurrentOwner) -> JobPublic:
    """One job: status, progress, metrics, error and the model it produced."""
    return JobPublic.from_row(get_owned(session, Job, job_id, owner))


def _events_after(engine: Engine, job_id: str, after: int) -> tuple[list[JobEventPublic], bool]:
    """The next page of events after an id, and whether the job had finished before they were read."""
    with Session(engine) as session:
        finished = session.scalar(select(Job.status).where(Job.id == job_id)) in FINISHED
        query = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.id > after)
        rows = session.scalars(query.order_by(JobEvent.id).limit(EVENT_PAGE))
        return [JobEventPublic.from_row(row) for row in rows], finished


def _sse(event: JobEventPublic) -> str:
    return f"id: {event.id}\nevent: {event.kind}\ndata: {event.model_dump_json()}\n\n"


async def _event_stream(request: Request, engine: Engine, job_id: str, after: int, follow: bool) -> AsyncIterator[str]:
    """Events as they are written; ends when the job has finished and everything was sent (or at once if not
    following), or when the client goes away."""
    quiet = 0.0
    while True:
        events, finished = await run_in_threadpool(_events_after, engine, job_id, after)
        for event in events:
            yield _sse(event)
            after = event.id
        if len(events) == EVENT_PAGE:
            continue
        if finished or not follow or await request.is_disconnected():
            return
        quiet = 0.0 if events else quiet + POLL_SECONDS
        if quiet >= KEEPALIVE_SECONDS:
            quiet = 0.0
            yield ": keep-alive\n\n"
        await asyncio.sleep(POLL_SECONDS)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"example": 'id: 7\nevent: progress\ndata: {"id": 7, "kind": ...}\n\n'}},
            "description": "`event: <kind>` (state, progress, log, metrics) and `data:` a JobEventPublic as JSON",
        },
        404: {"model": ErrorDetail},
    },
)
async def job_events(
    job_id: str,
    request: Request,
    owner: CurrentOwner,
    engine: EngineDep,
    session: SessionDep,
    after: Annotated[int | None, Query(ge=0, description="send events with a larger id")] = None,
    follow: Annotated[bool, Query(description="keep streaming until the job ends; false: the log so far")] = True,
    last_event_id: Annotated[str | None, Header(description="resume after this event id (EventSource)")] = None,
) -> StreamingResponse:
    """Server-sent events of a job (state changes, progress, logs, metrics) until it ends."""
    await run_in_threadpool(get_owned, session, Job, job_id, owner)
    resume = last_event_id or ""
    start = after if after is not None else int(resume) if resume.isdigit() else 0
    return StreamingResponse(
        _event_stream(request, engine, job_id, start, follow),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _log_lines(engine: Engine, job_id: str, path: Path) -> Iterator[bytes]:
    """The run's training log (if any), then every event as one line."""
    if path.is_file():
        yield f"# {path.name}\n".encode()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                yield chunk
    yield b"# events\n"
    after = 0
    while True:
        events, _ = _events_after(engine, job_id, after)
        for event in events:
            yield f"{event.created_at.isoformat()} {event.kind} {json.dumps(event.data)}\n".encode()
            after = event.id
        if len(events) < EVENT_PAGE:
            return


@router.get(
    "/{job_id}/logs",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/plain": {}}}, 404: {"model": ErrorDetail}},
)
def job_logs(
    job_id: str, session: SessionDep, owner: CurrentOwner, engine: EngineDep, settings: SettingsDep
) -> StreamingResponse:
    """Download the run's logs: the training log (JSON lines) followed by the job's events."""
    get_owned(session, Job, job_id, owner)
    return StreamingResponse(
        _log_lines(engine, job_id, train_log(settings, job_id)),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="job-{job_id}.log"'},
    )


@router.post(
    "/{job_id}/cancel",
    responses={
        202: {"model": JobPublic, "description": "running: cancellation requested, the worker stops within seconds"},
        404: {"model": ErrorDetail},
        409: {"model": ErrorDetail, "description": "the job has already finished"},
    },
)
def cancel_job(job_id: str, response: Response, session: SessionDep, owner: CurrentOwner) -> JobPublic:
    """Cancel a job: a queued one is cancelled at once (200), a running one is asked to stop (202)."""
    job = get_owned(session, Job, job_id, owner)
    if job.status in FINISHED:
        raise HTTPException(status.HTTP_409_CONFLICT, f"the job has already finished ({job.status}); nothing to cancel")
    now = utcnow()
    cancelled = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.queued)
        .values(status=JobStatus.cancelled, cancel_requested=True, finished_at=now)
    )
    if cancelled.rowcount == 1:  # type: ignore[attr-defined]
        session.add(_state_event(job_id, JobStatus.cancelled))
    else:
        session.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
        session.add(JobEvent(job_id=job_id, kind="log", data={"message": "cancellation requested"}))
        response.status_code = status.HTTP_202_ACCEPTED
    session.commit()
    session.refresh(job)
    return JobPublic.from_row(job)
