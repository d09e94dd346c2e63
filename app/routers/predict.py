"""Prediction: boxes for uploaded images from an exported model, or the first image annotated as a JPEG."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile, status
from fastapi.responses import Response
from pydantic import WithJsonSchema
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.auth import CurrentOwner, get_owned
from app.deps import SessionDep, SettingsDep
from app.metrics import PREDICT_SECONDS
from app.models import ModelVersion
from app.predictor import annotate, checked_image, predict
from app.schemas import AUTH_RESPONSES, DetectionPublic, ErrorDetail
from app.storage import SAVED_MODEL_DIR

router = APIRouter(prefix="/v1/models", tags=["predict"], responses=AUTH_RESPONSES)

Detections = list[DetectionPublic]
_FORM_SCHEMA = {
    "score_threshold": WithJsonSchema({"type": "number", "minimum": 0, "maximum": 1}),
    "max_detections": WithJsonSchema({"type": "integer", "minimum": 1}),
}
"""Optional form fields as a form can send them: a number or nothing (a multipart form has no null)."""


def _saved_model(session: Session, model_id: str, owner: str | None) -> Path:
    row = get_owned(session, ModelVersion, model_id, owner)
    folder = Path(row.path) / SAVED_MODEL_DIR
    if not folder.is_dir():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"model {model_id!r} has no SavedModel on the server")
    return folder


@router.post(
    "/{model_id}/predict",
    response_model=Detections | list[Detections],
    responses={
        200: {
            "description": "one file: a list of detections; several files: a list of such lists, in upload order; "
            "annotated=true: the first image as a JPEG with its boxes drawn",
            "content": {"image/jpeg": {}},
        },
        400: {"model": ErrorDetail, "description": "the body is not a readable multipart form"},
        404: {"model": ErrorDetail},
        413: {"model": ErrorDetail, "description": "an image over EFFDET_MAX_IMAGE_PIXELS"},
        422: {"model": ErrorDetail, "description": "a file that is not a readable image"},
    },
)
async def predict_route(
    model_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    owner: CurrentOwner,
    file: Annotated[list[UploadFile], File(min_length=1, description="one or several images (JPEG, PNG, ...)")],
    score_threshold: Annotated[float | None, Form(ge=0, le=1), _FORM_SCHEMA["score_threshold"]] = None,
    max_detections: Annotated[int | None, Form(ge=1), _FORM_SCHEMA["max_detections"]] = None,
    score_threshold_query: Annotated[
        float | None, Query(alias="score_threshold", ge=0, le=1, description="default: the export's threshold")
    ] = None,
    max_detections_query: Annotated[int | None, Query(alias="max_detections", ge=1)] = None,
    annotated: Annotated[bool, Query(description="answer the first image as a JPEG with boxes drawn")] = False,
) -> Detections | list[Detections] | Response:
    """Detect objects: boxes [xmin, ymin, xmax, ymax] in pixels of each original image, with label and score."""
    saved_model = await run_in_threadpool(_saved_model, session, model_id, owner)
    images = []
    for upload in file:
        data = await upload.read()
        name = upload.filename or "upload"
        images.append(await run_in_threadpool(checked_image, name, data, settings.max_image_pixels))
    threshold = score_threshold if score_threshold is not None else score_threshold_query
    limit = max_detections if max_detections is not None else max_detections_query
    start = time.perf_counter()
    results = await run_in_threadpool(
        predict, request.app.state.model_cache, model_id, saved_model, images, threshold, limit
    )
    PREDICT_SECONDS.observe(time.perf_counter() - start)
    if annotated:
        return Response(await run_in_threadpool(annotate, images[0], results[0]), media_type="image/jpeg")
    answers = [[DetectionPublic(**d.model_dump()) for d in detections] for detections in results]
    return answers[0] if len(answers) == 1 else answers
