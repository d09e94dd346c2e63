"""Prediction: boxes for uploaded images from an exported model, or the images themselves with the boxes drawn,
blurred or pixelated (one image, or a zip of several). A segmentation model also answers each image's class map:
as COCO RLE per class beside the detections, as a PNG of class ids, or drawn over the image."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile, status
from fastapi.responses import Response
from pydantic import TypeAdapter, WithJsonSchema
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.anonymise import Annotation, annotated_image, zipped
from app.auth import PREDICT, CurrentOwner, get_owned
from app.deps import SessionDep, SettingsDep
from app.limits import predict_rate
from app.metrics import PREDICT_SECONDS
from app.predictor import ModelCache, ModelSource, QueueFullError, checked_image
from app.schemas import AUTH_RESPONSES, DetectionPublic, ErrorDetail, SegmentedPrediction
from core.layout import saved_model_dir
from core.store import NotInStoreError, model_folder
from core.tables import ModelVersion
from effdet.formats import EXPORT_FORMATS, SAVED_MODEL, ExportFormat, read_manifest
from effdet.predict import Detection, ImagePrediction, mask_png, mask_rle, read_segmentation_classes

router = APIRouter(prefix="/v1/models", tags=["predict"], responses=AUTH_RESPONSES, dependencies=[PREDICT])
RUNTIME_HEADER = "X-Effdet-Runtime"
"""The answer's header naming the exported format that ran (the request's runtime or the model's default)."""

Detections = list[DetectionPublic]
Answer = Detections | list[Detections] | SegmentedPrediction | list[SegmentedPrediction]
MaskParam = Literal["rle", "png", "none"]
"""`?mask=`: a segmentation model's class map as RLE in the JSON (its default), as PNG files, or left out."""
_FORM_SCHEMA = {
    "score_threshold": WithJsonSchema({"type": "number", "minimum": 0, "maximum": 1}),
    "max_detections": WithJsonSchema({"type": "integer", "minimum": 1}),
    "runtime": WithJsonSchema({"type": "string", "enum": list(EXPORT_FORMATS)}),
}
"""Optional form fields as a form can send them: a number or nothing (a multipart form has no null)."""


AnnotatedParam = Literal["false", "0", "no", "off", "true", "1", "yes", "on", "boxes", "blur", "pixelate"]
"""`?annotated=`: the false words give detections as JSON, the true words and boxes draw them (as before)."""
_TRUE = ("true", "1", "yes", "on", "boxes")


def _annotation(value: AnnotatedParam) -> Annotation | None:
    """`annotated` as asked: None for detections as JSON."""
    if value in _TRUE:
        return "boxes"
    if value in ("blur", "pixelate"):
        return value
    return None


def _files_answer(names: list[str], answered: list[tuple[bytes, str]]) -> Response:
    """One image as its own body, several as a zip under their upload names."""
    if len(answered) == 1:
        return Response(answered[0][0], media_type=answered[0][1])
    return Response(zipped(names, answered), media_type="application/zip")


def _annotated_answer(names: list[str], images: list[bytes], found: list[ImagePrediction], how: Annotation) -> Response:
    """Each image as it came (JPEG for drawn boxes and class maps), blurred or pixelated where detected."""
    return _files_answer(
        names, [annotated_image(image, p.detections, how, p.class_map) for image, p in zip(images, found, strict=True)]
    )


def _mask_files(names: list[str], found: list[ImagePrediction]) -> Response:
    """Each image's class map as a PNG whose pixel values are the class ids."""
    return _files_answer(names, [(mask_png(p.class_map), "image/png") for p in found if p.class_map is not None])


def _json_answer(found: list[ImagePrediction], segmentation: dict[int, str] | None) -> bytes:
    """Detections per image; with a segmentation model's class names, each image's classes as RLE beside them."""
    if segmentation is None:
        detections = [p.detections for p in found]
        return _ONE.dump_json(detections[0]) if len(found) == 1 else _MANY.dump_json(detections)
    answers = [
        SegmentedPrediction(
            detections=[DetectionPublic.model_validate(d.model_dump()) for d in p.detections],
            size=p.class_map.shape if p.class_map is not None else (0, 0),
            segmentation=mask_rle(p.class_map, segmentation) if p.class_map is not None else [],
        )
        for p in found
    ]
    return _SEGMENTED_ONE.dump_json(answers[0]) if len(answers) == 1 else _SEGMENTED_MANY.dump_json(answers)


_ONE = TypeAdapter(list[Detection])
_MANY = TypeAdapter(list[list[Detection]])
"""Answers are serialised straight from the detections (the same fields as DetectionPublic, the documented model)."""
_SEGMENTED_ONE = TypeAdapter(SegmentedPrediction)
_SEGMENTED_MANY = TypeAdapter(list[SegmentedPrediction])


def segmentation_classes(source: ModelSource) -> dict[int, str] | None:
    """The class map's names of a segmentation model (from its SavedModel's assets); None for a detector."""
    return read_segmentation_classes(saved_model_dir(source.folder))


def _mask_problem(
    model_id: str, classes: dict[int, str] | None, mask: MaskParam | None, how: Annotation | None
) -> None:
    """422 for a class map asked of a detector, or asked as PNG files and as an annotated image at once."""
    if mask in ("rle", "png") and classes is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"model {model_id!r} has no segmentation head, so it has no class map to answer; leave out mask",
        )
    if mask == "png" and how is not None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "mask=png answers the class maps and annotated the images; ask for one of them per request",
        )


def _source(
    session: Session, model_id: str, owner: str | None, runtime: ExportFormat | None, threshold: float | None
) -> ModelSource:
    """The model version as the runtime asked for serves it, else as its default runtime does (the SavedModel when
    the default TFLite file cannot serve so low a threshold); 404 for an unknown model, 422 for a runtime it was
    not exported in or a threshold the TFLite file cannot serve."""
    row = get_owned(session, ModelVersion, model_id, owner)
    try:
        folder = model_folder(row)
    except NotInStoreError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"model {model_id!r} has no files in the store") from None
    if not saved_model_dir(folder).is_dir():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"model {model_id!r} has no SavedModel on the server")
    manifest = read_manifest(folder)
    exported: list[ExportFormat] = list(manifest.formats) if manifest else [SAVED_MODEL]
    if runtime is not None and runtime not in exported:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"model {model_id!r} was exported as {', '.join(exported)}, not {runtime}; choose one of those runtimes "
            "or train it again with that format in export_formats",
        )
    chosen = runtime or (manifest.default_runtime if manifest else SAVED_MODEL)
    if manifest and threshold is not None and threshold < manifest.floor(chosen):
        if runtime is not None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"the {runtime} file of model {model_id!r} drops detections under {manifest.min_score}, the threshold "
                f"it was exported with, so it cannot answer score_threshold {threshold}; ask for runtime=saved_model",
            )
        chosen = SAVED_MODEL
    return ModelSource(model_id, chosen, folder, manifest)


def _checked_request(
    session: Session,
    model_id: str,
    owner: str | None,
    runtime: ExportFormat | None,
    threshold: float | None,
    names: list[str],
    uploads: list[bytes],
    max_pixels: int,
    mask: MaskParam | None,
    how: Annotation | None,
) -> tuple[ModelSource, dict[int, str] | None, list[bytes]]:
    """The model as it will serve with its class map's names (404/422) and each upload checked (422/413), in one
    thread hop."""
    source = _source(session, model_id, owner, runtime, threshold)
    classes = segmentation_classes(source)
    _mask_problem(model_id, classes, mask, how)
    return source, classes, [checked_image(name, data, max_pixels) for name, data in zip(names, uploads, strict=True)]


@router.post(
    "/{model_id}/predict",
    response_model=Answer,
    responses={
        200: {
            "description": "one file: a list of detections; several files: a list of such lists, in upload order. "
            "A segmentation model answers an object per image instead: its detections, its size and each class's "
            "pixels as COCO RLE (mask=none: detections only as a detector does; mask=png: the class maps as PNGs "
            "whose pixel values are class ids). annotated=true (or boxes): the image as a JPEG with its boxes (and "
            "class map) drawn; annotated=blur or pixelate: the image at its size and in its format with every "
            "detection blurred or pixelated; several files: a zip of such images under the upload names",
            "content": {"image/jpeg": {}, "image/png": {}, "application/zip": {}},
        },
        400: {"model": ErrorDetail, "description": "the body is not a readable multipart form"},
        404: {"model": ErrorDetail},
        413: {"model": ErrorDetail, "description": "an image over EFFDET_MAX_IMAGE_PIXELS"},
        422: {
            "model": ErrorDetail,
            "description": "a file that is not a readable image, a runtime the model was not exported in, or a mask "
            "asked of a model without a segmentation head",
        },
        429: {"model": ErrorDetail, "description": "this key is over EFFDET_PREDICT_RPS; retry after Retry-After s"},
        503: {"model": ErrorDetail, "description": "too many images wait for inference; retry after Retry-After s"},
    },
    dependencies=[Depends(predict_rate)],
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
    runtime: Annotated[ExportFormat | None, Form(), _FORM_SCHEMA["runtime"]] = None,
    runtime_query: Annotated[
        ExportFormat | None,
        Query(
            alias="runtime",
            description="the exported format to run: saved_model, tflite, tflite_float16 or tflite_int8; default: "
            "the model's default_runtime (GET /v1/models/{id})",
        ),
    ] = None,
    annotated: Annotated[
        AnnotatedParam,
        Query(
            description="false: detections as JSON; true or boxes: the images with boxes drawn; blur or pixelate: "
            "the images with every detection above the threshold made unreadable (anonymisation)"
        ),
    ] = "false",
    mask: Annotated[
        MaskParam | None,
        Query(
            description="a segmentation model's class map: rle (its default) as COCO RLE per class beside the "
            "detections, png as PNG files of class ids (a zip for several), none to answer detections only"
        ),
    ] = None,
) -> Answer | Response:
    """Detect objects: boxes [xmin, ymin, xmax, ymax] in pixels of each original image, with label and score."""
    how = _annotation(annotated)
    names = [upload.filename or "upload" for upload in file]
    uploads = [await upload.read() for upload in file]
    threshold = score_threshold if score_threshold is not None else score_threshold_query
    limit = max_detections if max_detections is not None else max_detections_query
    asked = runtime if runtime is not None else runtime_query
    source, classes, images = await run_in_threadpool(
        _checked_request,
        session,
        model_id,
        owner,
        asked,
        threshold,
        names,
        uploads,
        settings.max_image_pixels,
        mask,
        how,
    )
    cache: ModelCache = request.app.state.model_cache
    start = time.perf_counter()
    if not cache.loaded(source):
        await run_in_threadpool(cache.get, source)
    try:
        future = cache.queue.submit(source, names, images, threshold)
    except QueueFullError as full:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"{full}: the server is busy with other predictions; send this request again then",
            headers={"Retry-After": str(full.retry_after)},
        ) from full
    found = [
        ImagePrediction(p.detections[:limit], p.class_map if mask != "none" else None)
        for p in await asyncio.wrap_future(future)
    ]
    PREDICT_SECONDS.observe(time.perf_counter() - start)
    if how is not None:
        # The uploads as sent, so an anonymised image keeps its format (images may hold a PNG re-encoding).
        answer = await run_in_threadpool(_annotated_answer, names, uploads, found, how)
    elif mask == "png":
        answer = await run_in_threadpool(_mask_files, names, found)
    else:
        body = await run_in_threadpool(_json_answer, found, classes if mask != "none" else None)
        answer = Response(body, media_type="application/json")
    answer.headers[RUNTIME_HEADER] = source.runtime
    return answer
