"""Exported models: list, show, download as a zipped SavedModel or a TFLite file."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import FileResponse, StreamingResponse
from sqlalchemy import func, select

from app.auth import PREDICT, TRAIN, CurrentOwner, get_owned, owned
from app.deletion import DELETE_RESPONSES, delete_owned
from app.deps import SessionDep, SettingsDep
from app.schemas import (
    AUTH_RESPONSES,
    MAX_OFFSET,
    ErrorDetail,
    EvaluationImagesPublic,
    ModelFormat,
    ModelPublic,
    ModelsPublic,
)
from app.storage import zip_stream
from core.layout import run_dir, saved_model_dir
from core.store import NotInStoreError, dataset_records, model_folder, model_listing
from core.tables import Job, ModelVersion
from effdet.confusion import confusion_matrix, worst_images
from effdet.data.image_index import gallery_ids
from effdet.data.layout import IMAGE_INDEX_FILE
from effdet.formats import format_file, read_manifest, served_min_score
from effdet.layout import FORMATS_FILE, VAL_DETECTIONS_FILE

router = APIRouter(prefix="/v1/models", tags=["models"], responses=AUTH_RESPONSES, dependencies=[PREDICT])


@router.get("")
def list_models(
    session: SessionDep,
    owner: CurrentOwner,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> ModelsPublic:
    """Your exported models, newest first."""
    count = session.scalar(owned(select(func.count()).select_from(ModelVersion), ModelVersion, owner)) or 0
    rows = session.scalars(
        owned(select(ModelVersion), ModelVersion, owner)
        .order_by(ModelVersion.created_at.desc())
        .limit(limit)
        .offset(offset)
    )
    return ModelsPublic(items=[ModelPublic.from_row(row) for row in rows], count=count)


@router.get("/{model_id}", responses={404: {"model": ErrorDetail}})
def get_model(model_id: str, session: SessionDep, owner: CurrentOwner) -> ModelPublic:
    """One model version: variant, version, metrics, classes and downloadable formats."""
    return ModelPublic.from_row(get_owned(session, ModelVersion, model_id, owner))


@router.delete(
    "/{model_id}",
    dependencies=[TRAIN],
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=DELETE_RESPONSES,
)
def delete_model(
    model_id: str, request: Request, session: SessionDep, owner: CurrentOwner, settings: SettingsDep
) -> None:
    """Delete a model version: its exported files and its evaluations; this API process stops serving it at
    once, others on their next request (refused while an evaluation of it runs)."""
    delete_owned(session, settings, ModelVersion, model_id, owner)
    request.app.state.model_cache.forget(model_id)


@router.get(
    "/{model_id}/download",
    response_class=StreamingResponse,
    response_model=None,
    responses={
        200: {"content": {"application/zip": {}, "application/octet-stream": {}}},
        404: {"model": ErrorDetail, "description": "no such model, or not exported in that format"},
    },
)
def download_model(
    model_id: str,
    session: SessionDep,
    owner: CurrentOwner,
    format: Annotated[
        ModelFormat,
        Query(description="saved_model (a zip of the folder), tflite, tflite_float16 or tflite_int8 (a .tflite file)"),
    ] = "saved_model",
) -> StreamingResponse | FileResponse:
    """Download the model in one of the formats it was exported in (its `formats`)."""
    row = get_owned(session, ModelVersion, model_id, owner)
    try:
        folder = model_folder(row)
    except NotInStoreError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this model has no files in the store") from None
    stem = f"{row.name}-v{row.version}"
    if format != "saved_model":
        path = folder / format_file(format)
        if not path.is_file():
            exported = ", ".join(ModelPublic.from_row(row).formats) or "nothing"
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                f"this model was not exported as {format} (it has {exported}); ask for it in a job's export_formats",
            )
        suffix = "" if format == "tflite" else f"-{format.removeprefix('tflite_')}"
        return FileResponse(path, media_type="application/octet-stream", filename=f"{stem}{suffix}.tflite")
    saved_model = saved_model_dir(folder)
    if not saved_model.is_dir():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this model has no SavedModel on the server")
    return StreamingResponse(
        zip_stream(saved_model, stem),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{stem}.zip"'},
    )


@router.get(
    "/{model_id}/val-images",
    dependencies=[TRAIN],
    responses={404: {"model": ErrorDetail, "description": "no such model, or its job stored no val predictions"}},
)
def val_images(
    model_id: str,
    session: SessionDep,
    settings: SettingsDep,
    owner: CurrentOwner,
    limit: Annotated[int, Query(ge=1, le=1000)] = 24,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> EvaluationImagesPublic:
    """The val images of the model's job with their boxes and the model's detections at its default threshold,
    most errors first (false detections plus missed boxes), as the job evaluated them."""
    row = get_owned(session, ModelVersion, model_id, owner)
    folder = model_listing(row, (FORMATS_FILE, VAL_DETECTIONS_FILE)).folder
    stored = folder / VAL_DETECTIONS_FILE  # where jobs keep them now; earlier ones left them in the run folder
    if not stored.is_file():
        stored = run_dir(settings, row.job_id) / VAL_DETECTIONS_FILE
    job = session.get(Job, row.job_id)
    if not stored.is_file() or job is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            "this model's job stored no val predictions (its dataset had no val split, or it ran before jobs kept "
            "them); evaluate it on a dataset instead (POST /v1/models/{id}/evaluations)",
        )
    document = json.loads(stored.read_text())
    manifest = read_manifest(folder)
    threshold = served_min_score(manifest)
    truth, detections = document["ground_truth"], document["detections"]
    errors = confusion_matrix(truth, detections, threshold).image_errors
    index = dataset_records(settings, job.dataset_id) / IMAGE_INDEX_FILE
    gallery = gallery_ids(index)
    images = worst_images(truth, detections, errors, gallery, threshold)
    return EvaluationImagesPublic.model_validate({"items": images[offset : offset + limit], "count": len(images)})
