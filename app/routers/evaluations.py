"""Evaluations: run a model over any ready dataset whose classes it knows, list them (by dataset: the comparison of
every model evaluated on it), show one, cancel."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth import TRAIN, CurrentOwner, find_owned, get_owned, owned
from app.callbacks import add_callbacks, check_callbacks
from app.deletion import DELETE_RESPONSES, delete_owned
from app.deps import SessionDep, SettingsDep
from app.idempotency import IdempotencyDep, create_once, forget, mark_replayed, replay_body
from app.schemas import (
    AUTH_RESPONSES,
    MAX_OFFSET,
    ErrorDetail,
    EvaluationCreate,
    EvaluationImagesPublic,
    EvaluationPublic,
    EvaluationsPublic,
    LabelIssuesPublic,
)
from core import evaluations
from core.layout import IMAGES_FILE, LABEL_ERRORS_FILE
from core.queue import send_evaluation
from core.settings import Settings
from core.store import evaluation_files, model_listing
from core.tables import Dataset, DatasetStatus, Evaluation, EvaluationStatus, Job, ModelVersion, new_id
from effdet.formats import (
    SAVED_MODEL,
    ExportFormat,
    FormatsManifest,
    read_manifest,
    served_min_score,
)
from effdet.layout import FORMATS_FILE

router = APIRouter(prefix="/v1", tags=["evaluations"], responses=AUTH_RESPONSES, dependencies=[TRAIN])


def _problem(field: str, message: str) -> dict[str, Any]:
    return {"loc": ["body", field], "msg": message, "type": "value_error"}


def _manifest(model: ModelVersion) -> FormatsManifest | None:
    """The model's formats manifest (with a bucket store, fetched alone, not the model)."""
    return read_manifest(model_listing(model, (FORMATS_FILE,)).folder)


def _problems(body: EvaluationCreate, model: ModelVersion, dataset: Dataset | None) -> list[dict[str, Any]]:
    """Every reason the evaluation cannot run, as FastAPI's 422 entries."""
    problems = []
    if dataset is None:
        problems.append(_problem("dataset_id", f"dataset {body.dataset_id!r} not found; GET /v1/datasets lists yours"))
    elif dataset.status != DatasetStatus.ready:
        problems.append(_problem("dataset_id", f"dataset {dataset.id!r} is {dataset.status}, not ready"))
    else:
        known = set((model.label_map or {}).values())
        unmatched = sorted(set((dataset.label_map or {}).values()) - known)
        if unmatched:
            message = (
                f"the dataset has classes the model does not know: {', '.join(unmatched)} (the model has "
                f"{', '.join(sorted(known)) or 'none'}); give the dataset class_aliases that map them onto the "
                "model's names (PATCH /v1/datasets/{id}) or evaluate on a dataset of the model's classes"
            )
            problems.append(_problem("dataset_id", message))
        splits = (dataset.report or {}).get("splits", {})
        if body.split == "val" and not splits.get("val", {}).get("images"):
            message = "the dataset has no val images; evaluate split 'train' or 'all'"
            problems.append(_problem("split", message))
    manifest = _manifest(model)
    exported: list[ExportFormat] = list(manifest.formats) if manifest else [SAVED_MODEL]
    chosen = body.format or (manifest.default_runtime if manifest else SAVED_MODEL)
    if chosen not in exported:
        message = f"the model was exported as {', '.join(exported)}, not {chosen}; choose one of those"
        problems.append(_problem("format", message))
    floor = manifest.floor(chosen) if manifest else 0.0
    if body.score_threshold is not None and body.score_threshold < floor:
        message = (
            f"the {chosen} file drops detections under {floor}, the threshold it was exported with, so it cannot "
            f"count at score_threshold {body.score_threshold}; use format saved_model or a threshold >= {floor}"
        )
        problems.append(_problem("score_threshold", message))
    return problems


def _heads_problems(session: Session, model: ModelVersion) -> list[dict[str, Any]]:
    """A 422 entry for a model without a detection head: an evaluation counts boxes found and missed."""
    job = session.get(Job, model.job_id)
    heads = (job.config if job is not None else {}).get("heads") or ["object_detection"]
    if "object_detection" in heads:
        return []
    message = (
        "the model only segments, and an evaluation counts the boxes a detector finds and misses; its mIoU on the "
        "val split is in its metrics (GET /v1/models/{id}), or train it with heads [object_detection, segmentation]"
    )
    return [_problem("model_id", message)]


def _public(session: Session, row: Evaluation) -> EvaluationPublic:
    return EvaluationPublic.from_row(row, session.get(ModelVersion, row.model_id))


@router.post(
    "/models/{model_id}/evaluations",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        400: {"model": ErrorDetail, "description": "the body is not readable JSON (e.g. not UTF-8)"},
        404: {"model": ErrorDetail, "description": "no such model"},
        422: {"model": ErrorDetail, "description": "every problem of the request, one per entry"},
        503: {"model": ErrorDetail, "description": "the queue is unreachable"},
    },
)
def create_evaluation(
    model_id: str,
    body: EvaluationCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    owner: CurrentOwner,
    key: IdempotencyDep,
) -> EvaluationPublic:
    """Evaluate a model on a dataset's split in one of its formats: a worker runs it and stores COCO metrics,
    per-class AP and PR curves, and at the score threshold the found, false and missed boxes per class and a
    confusion matrix. With an Idempotency-Key, a retry returns the first evaluation."""
    request_hash, earlier = replay_body(session, key, request, response, body, Evaluation)
    if earlier is not None:
        return _public(session, earlier)
    model = get_owned(session, ModelVersion, model_id, owner)
    if body.dataset_id is None:
        job = session.get(Job, model.job_id)
        body = body.model_copy(update={"dataset_id": job.dataset_id if job is not None else ""})
    dataset = find_owned(session, Dataset, str(body.dataset_id), owner)
    problems = _problems(body, model, dataset) + _heads_problems(session, model)
    if problems:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, problems)
    check_callbacks(body.callback_urls, settings)
    manifest = _manifest(model)
    threshold = body.score_threshold
    if threshold is None:
        threshold = served_min_score(manifest)
    new = Evaluation(
        id=new_id(),
        owner=owner,
        model_id=model.id,
        dataset_id=str(body.dataset_id),
        split=body.split,
        format=body.format or (manifest.default_runtime if manifest else SAVED_MODEL),
        score_threshold=threshold,
    )
    add_callbacks(session, owner, body.callback_urls, new.id)
    row = create_once(
        session, key, request_hash, new, lambda: evaluations.queue_evaluation(session=session, evaluation=new)
    )
    if row is not new:
        mark_replayed(response)
        return _public(session, row)
    try:
        send_evaluation(row.id)
    except Exception as err:
        evaluations.fail_unsent(session=session, evaluation=row, error=f"the queue is unreachable: {err}")
        forget(session, key)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"the queue is unreachable ({err}); submit again later"
        ) from err
    return _public(session, row)


@router.get("/evaluations")
def list_evaluations(
    session: SessionDep,
    owner: CurrentOwner,
    dataset_id: Annotated[str | None, Query(description="only evaluations on this dataset: the comparison")] = None,
    model_id: Annotated[str | None, Query(description="only evaluations of this model")] = None,
    evaluation_status: Annotated[EvaluationStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> EvaluationsPublic:
    """Your evaluations, newest first; with `dataset_id`, every model evaluated on that dataset side by side
    (metrics, per-class AP, PR curves and the latency of the format each ran)."""
    query = owned(select(Evaluation), Evaluation, owner)
    if dataset_id is not None:
        query = query.where(Evaluation.dataset_id == dataset_id)
    if model_id is not None:
        query = query.where(Evaluation.model_id == model_id)
    if evaluation_status is not None:
        query = query.where(Evaluation.status == evaluation_status.value)
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Evaluation.created_at.desc()).limit(limit).offset(offset))
    return EvaluationsPublic(items=[_public(session, row) for row in rows], count=count)


@router.get("/evaluations/{evaluation_id}", responses={404: {"model": ErrorDetail}})
def get_evaluation(evaluation_id: str, session: SessionDep, owner: CurrentOwner) -> EvaluationPublic:
    """One evaluation: its state and progress, and when it succeeded its result."""
    return _public(session, get_owned(session, Evaluation, evaluation_id, owner))


@router.delete(
    "/evaluations/{evaluation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=DELETE_RESPONSES,
)
def delete_evaluation(evaluation_id: str, session: SessionDep, owner: CurrentOwner, settings: SettingsDep) -> None:
    """Delete an evaluation that has ended, with its findings (cancel a queued or running one first)."""
    delete_owned(session, settings, Evaluation, evaluation_id, owner)


@router.post(
    "/evaluations/{evaluation_id}/cancel",
    responses={404: {"model": ErrorDetail}, 409: {"model": ErrorDetail, "description": "it has already ended"}},
)
def cancel_evaluation(evaluation_id: str, session: SessionDep, owner: CurrentOwner) -> EvaluationPublic:
    """Cancel an evaluation: a queued one ends at once, a running one stops at its next image."""
    row = get_owned(session, Evaluation, evaluation_id, owner)
    if row.status in evaluations.ENDED:
        raise HTTPException(status.HTTP_409_CONFLICT, f"the evaluation has already ended ({row.status})")
    evaluations.cancel_evaluation(session=session, evaluation=row)
    return _public(session, row)


def _succeeded_file(
    session: Session, settings: Settings, evaluation_id: str, owner: str | None, name: str
) -> list[dict[str, Any]]:
    """A succeeded evaluation's findings or images; 409 while it has none."""
    row = get_owned(session, Evaluation, evaluation_id, owner)
    path = evaluation_files(settings, row.id) / name
    if row.status != EvaluationStatus.succeeded or not path.is_file():
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"the evaluation is {row.status}: its findings come when it has succeeded"
        )
    document: list[dict[str, Any]] = json.loads(path.read_text())
    return document


@router.get(
    "/evaluations/{evaluation_id}/label-errors",
    responses={404: {"model": ErrorDetail}, 409: {"model": ErrorDetail, "description": "it has not succeeded"}},
)
def label_errors(
    evaluation_id: str,
    session: SessionDep,
    settings: SettingsDep,
    owner: CurrentOwner,
    kind: Annotated[
        Literal["missing_box", "spurious_box", "wrong_class", "loose_box"] | None, Query(description="only this kind")
    ] = None,
    min_confidence: Annotated[float, Query(ge=0, le=1)] = 0.0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> LabelIssuesPublic:
    """The annotations most likely wrong, most confident first, each with its reason and the detection behind
    it: a confident detection where no box is (missing_box), a box nothing is detected near (spurious_box), a box
    covered by a confident detection of another class (wrong_class), a box its class's detection overlaps only
    0.3-0.6 (loose_box)."""
    issues = _succeeded_file(session, settings, evaluation_id, owner, LABEL_ERRORS_FILE)
    chosen = [i for i in issues if (kind is None or i["kind"] == kind) and i["confidence"] >= min_confidence]
    return LabelIssuesPublic.model_validate({"items": chosen[offset : offset + limit], "count": len(chosen)})


@router.get(
    "/evaluations/{evaluation_id}/images",
    responses={404: {"model": ErrorDetail}, 409: {"model": ErrorDetail, "description": "it has not succeeded"}},
)
def evaluation_images(
    evaluation_id: str,
    session: SessionDep,
    settings: SettingsDep,
    owner: CurrentOwner,
    limit: Annotated[int, Query(ge=1, le=1000)] = 24,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> EvaluationImagesPublic:
    """The evaluated images with their boxes and the detections at the threshold, most errors first."""
    images = _succeeded_file(session, settings, evaluation_id, owner, IMAGES_FILE)
    return EvaluationImagesPublic.model_validate({"items": images[offset : offset + limit], "count": len(images)})
