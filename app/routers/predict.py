"""Prediction: boxes for uploaded images from an exported model, or the first image annotated as a JPEG."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile, status
from fastapi.responses import Response
from pydantic import TypeAdapter, WithJsonSchema
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.auth import CurrentOwner, get_owned
from app.deps import SessionDep, SettingsDep
from app.metrics import PREDICT_SECONDS
from app.predictor import ModelCache, QueueFullError, annotate, checked_image
from app.schemas import AUTH_RESPONSES, DetectionPublic, ErrorDetail
from core.layout import saved_model_dir
from core.tables import ModelVersion
from effdet.predict import Detection

router = APIRouter(prefix="/v1/models", tags=["predict"], responses=AUTH_RESPONSES)

Detections = list[DetectionPublic]
_FORM_SCHEMA = {
    "score_threshold": WithJsonSchema({"type": "number", "minimum": 0, "maximum": 1}),
    "max_detections": WithJsonSchema({"type": "integer", "minimum": 1}),
}
"""Optional form fields as a form can send them: a number or nothing (a multipart form has no null)."""


_ONE = TypeAdapter(list[Detection])
_MANY = TypeAdapter(list[list[Detection]])
"""Answers are serialised straight from the detections (the same fields as DetectionPublic, the documented model)."""


def _saved_model(session: Session, model_id: str, owner: str | None) -> Path:
    row = get_owned(session, ModelVersion, model_id, owner)
    folder = saved_model_dir(Path(row.path))
    if not folder.is_dir():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"model {model_id!r} has no SavedModel on the server")
    return folder


def _checked_request(
    session: Session, model_id: str, owner: str | None, names: list[str], uploads: list[bytes], max_pixels: int
) -> tuple[Path, list[bytes]]:
    """The model's SavedModel folder (404 when unknown) and each upload checked (422/413), in one thread hop."""
    return _saved_model(session, model_id, owner), [
        checked_image(name, data, max_pixels) for name, data in zip(names, uploads, strict=True)
    ]


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
        503: {"model": ErrorDetail, "description": "too many images wait for inference; retry after Retry-After s"},
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
    names = [upload.filename or "upload" for upload in file]
    uploads = [await upload.read() for upload in file]
    saved_model, images = await run_in_threadpool(
        _checked_request, session, model_id, owner, names, uploads, settings.max_image_pixels
    )
    threshold = score_threshold if score_threshold is not None else score_threshold_query
    limit = max_detections if max_detections is not None else max_detections_query
    cache: ModelCache = request.app.state.model_cache
    start = time.perf_counter()
    if not cache.loaded(model_id):
        await run_in_threadpool(cache.get, model_id, saved_model)
    try:
        future = cache.queue.submit(model_id, saved_model, names, images, threshold)
    except QueueFullError as full:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"{full}: the server is busy with other predictions; send this request again then",
            headers={"Retry-After": str(full.retry_after)},
        ) from full
    results = [detections[:limit] for detections in await asyncio.wrap_future(future)]
    PREDICT_SECONDS.observe(time.perf_counter() - start)
    if annotated:
        return Response(await run_in_threadpool(annotate, images[0], results[0]), media_type="image/jpeg")
    body = _ONE.dump_json(results[0]) if len(results) == 1 else _MANY.dump_json(results)
    return Response(body, media_type="application/json")
