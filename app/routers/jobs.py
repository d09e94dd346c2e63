"""Jobs: submit (validated in full before queueing), list, show, follow as server-sent events, logs, cancel, plots."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.auth import TRAIN, CurrentOwner, find_owned, get_owned, owned
from app.callbacks import add_callbacks, check_callbacks
from app.deletion import DELETE_RESPONSES, delete_owned
from app.deps import EngineDep, SessionDep, SettingsDep
from app.idempotency import IdempotencyDep, create_once, forget, mark_replayed, replay_body
from app.limits import check_job_slot
from app.plots import Series, line_chart, pr_chart
from app.schemas import AUTH_RESPONSES, MAX_OFFSET, ErrorDetail, JobCreate, JobEventPublic, JobPublic, JobsPublic
from app.submission import SubmissionError, resolve_job
from core import run_snapshots, states
from core.queue import send_job
from core.settings import Settings
from core.tables import FINISHED, Dataset, Job, JobEvent, JobStatus, new_id

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=AUTH_RESPONSES, dependencies=[TRAIN])

POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
EVENT_PAGE = 500


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        400: {"model": ErrorDetail, "description": "the body is not readable JSON (e.g. not UTF-8)"},
        422: {"model": ErrorDetail, "description": "every problem of the submission, one per entry"},
        429: {"model": ErrorDetail, "description": "the owner is at EFFDET_MAX_ACTIVE_JOBS; retry after Retry-After s"},
    },
)
def create_job(
    body: JobCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    owner: CurrentOwner,
    key: IdempotencyDep,
) -> JobPublic:
    """Submit a fine-tuning job; it is queued once dataset, model, hyperparameters and checkpoint all check out.
    With an Idempotency-Key, a retry of the same submission returns the first job instead of queueing another."""
    request_hash, earlier = replay_body(session, key, request, response, body, Job)
    if earlier is not None:
        return JobPublic.from_row(earlier)
    check_job_slot(session, settings, owner)
    check_callbacks(body.callback_urls, settings)
    dataset = find_owned(session, Dataset, body.dataset_id, owner)
    try:
        resolved = resolve_job(body, dataset, settings)
    except SubmissionError as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, err.problems) from None
    new = Job(
        id=new_id(),
        owner=owner,
        dataset_id=body.dataset_id,
        model_name=body.model,
        config=resolved.config,
        options=resolved.options,
    )
    add_callbacks(session, owner, body.callback_urls, new.id)
    job = create_once(
        session, key, request_hash, new, lambda: states.queue_job(session=session, job=new, warnings=resolved.warnings)
    )
    if job is not new:
        mark_replayed(response)
        return JobPublic.from_row(job)
    try:
        send_job(job.id)
    except Exception as err:
        states.fail_unsent_job(session=session, job=job, error=f"the job queue is unreachable: {err}")
        forget(session, key)
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
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
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
        _log_lines(engine, job_id, run_snapshots.train_log(settings, job_id)),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="job-{job_id}.log"'},
    )


@router.post(
    "/{job_id}/cancel",
    responses={
        202: {
            "model": JobPublic,
            "description": "running: cancellation (or, with keep_model, finishing) requested; the worker stops "
            "training within seconds",
        },
        404: {"model": ErrorDetail},
        409: {"model": ErrorDetail, "description": "the job has already finished"},
    },
)
def cancel_job(
    job_id: str,
    response: Response,
    session: SessionDep,
    owner: CurrentOwner,
    keep_model: Annotated[
        bool,
        Query(
            description="finish training now instead and keep the model: the weights so far are recalibrated, "
            "evaluated and exported, and the job succeeds (a queued job has nothing to keep: it is cancelled)"
        ),
    ] = False,
) -> JobPublic:
    """Cancel a job: a queued one is cancelled at once (200), a running one is asked to stop (202)."""
    job = get_owned(session, Job, job_id, owner)
    if job.status in FINISHED:
        raise HTTPException(status.HTTP_409_CONFLICT, f"the job has already finished ({job.status}); nothing to cancel")
    if not states.cancel_job(session=session, job=job, keep_model=keep_model):
        response.status_code = status.HTTP_202_ACCEPTED
    return JobPublic.from_row(job)


@router.delete(
    "/{job_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=DELETE_RESPONSES,
)
def delete_job(job_id: str, session: SessionDep, owner: CurrentOwner, settings: SettingsDep) -> None:
    """Delete a finished job with its run folder (checkpoints, logs) and events. Refused while it is queued or
    running (cancel it first) and while the model it made exists (delete that first)."""
    delete_owned(session, settings, Job, job_id, owner)


PLOTS = ("loss", "learning_rate", "pr_curve")
LOSS_KEYS = ("loss", "cls_loss", "box_loss")


def _progress_reports(session: Session, settings: Settings, job_id: str) -> list[dict[str, Any]]:
    """The job's progress reports in step order (its progress events, else the run's train.jsonl); a step
    trained again after a resume keeps its latest report."""
    query = select(JobEvent.data).where(JobEvent.job_id == job_id, JobEvent.kind == "progress")
    reports: list[dict[str, Any]] = list(session.scalars(query.order_by(JobEvent.id)))
    log_path = run_snapshots.train_log(settings, job_id)
    if not reports and log_path.is_file():
        reports = [_json_object(line) for line in log_path.read_text(errors="replace").splitlines()]
    by_step = {report["step"]: report for report in reports if isinstance(report.get("step"), int)}
    return [by_step[step] for step in sorted(by_step)]


def _json_object(line: str) -> dict[str, Any]:
    """One JSON-lines record; {} for a line cut short (a run still writing, or killed mid-line)."""
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _curves(reports: list[dict[str, Any]], keys: tuple[str, ...]) -> Series:
    """(step, value) lines for each key that has finite values."""
    lines = {key: [(float(r["step"]), float(r[key])) for r in reports if _finite(r.get(key))] for key in keys}
    return {key: points for key, points in lines.items() if points}


def _pr_curves(job: Job) -> Series:
    """Per-class precision-recall points at IoU 0.5 from the job's metrics, labelled with their AP50."""
    curves = {}
    for name, values in ((job.metrics or {}).get("per_class") or {}).items():
        if values.get("pr_curve"):
            ap50 = values.get("ap50")
            label = f"{name} (AP50 {ap50:.3f})" if isinstance(ap50, int | float) else name
            curves[label] = [(float(r), float(p)) for r, p in values["pr_curve"]]
    return curves


def _missing(job: Job, what: str, when: str) -> HTTPException:
    """409 while the job may still produce the data, 404 once it has finished without it."""
    if job.status in FINISHED:
        return HTTPException(status.HTTP_404_NOT_FOUND, f"job {job.id} ended ({job.status}) without {what}")
    return HTTPException(status.HTTP_409_CONFLICT, f"job {job.id} has no {what} yet ({job.status}); {when}")


def _unknown_plot(name: str) -> HTTPException:
    valid = ", ".join(f"{plot}.png" for plot in PLOTS)
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no plot named {name!r}; valid names: {valid}")


@router.get(
    "/{job_id}/plots/{name}.png",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "the plot as a PNG"},
        404: {"model": ErrorDetail, "description": "no such job or plot name, or the job ended without the data"},
        409: {"model": ErrorDetail, "description": "the job has not produced the data yet; try again later"},
    },
)
def job_plot(job_id: str, name: str, session: SessionDep, settings: SettingsDep, owner: CurrentOwner) -> Response:
    """A PNG of the job's loss or learning-rate curve (by step), or of its per-class precision-recall curves."""
    job = get_owned(session, Job, job_id, owner)
    if name not in PLOTS:
        raise _unknown_plot(name)
    if name == "pr_curve":
        curves = _pr_curves(job)
        if not curves:
            raise _missing(job, "precision-recall points", "they come with the metrics after evaluation")
        png = pr_chart(curves, f"precision-recall at IoU 0.5, job {job_id[:8]}")
    else:
        keys = LOSS_KEYS if name == "loss" else ("learning_rate",)
        series = _curves(_progress_reports(session, settings, job_id), keys)
        if not series:
            raise _missing(job, "progress reports", "the curve starts with the first training step")
        png = line_chart(series, f"{name.replace('_', ' ')}, job {job_id[:8]}", "step", name, log_y=name == "loss")
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-cache"})


@router.get("/{job_id}/plots/{name}", include_in_schema=False)
def job_plot_unknown(job_id: str, name: str, session: SessionDep, owner: CurrentOwner) -> None:
    """Any plot path without .png: 404 listing the valid names."""
    get_owned(session, Job, job_id, owner)
    raise _unknown_plot(name)
