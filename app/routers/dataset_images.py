"""A dataset's images (the gallery): pages of the image index the converter wrote, and thumbnails with boxes drawn."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi import Path as PathParam

from app.auth import TRAIN, CurrentOwner, get_owned
from app.deps import SessionDep, SettingsDep
from app.gallery import MAX_THUMBNAIL, ImageUnavailableError, find, page, read_member, thumbnail
from app.schemas import AUTH_RESPONSES, MAX_OFFSET, ErrorDetail, ImagePublic, ImageSplit, ImagesPublic
from core.layout import UPLOAD_FILE
from core.settings import Settings
from core.store import dataset_input, dataset_records
from core.tables import Dataset, DatasetStatus
from effdet.data.layout import IMAGE_INDEX_FILE

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=AUTH_RESPONSES, dependencies=[TRAIN])

ImageId = Annotated[str, PathParam(pattern=r"^[0-9a-f]{16}(-[0-9]+)?$", description="an id from the images list")]
_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "no such dataset or image, or converted before images were indexed"},
    409: {"model": ErrorDetail, "description": "the dataset is being validated or failed; the image is unreadable"},
}


def _index(session: SessionDep, settings: Settings, dataset_id: str, owner: str | None) -> Path:
    """The image index of a dataset the owner may see, or the 404/409 that says why there is none."""
    row = get_owned(session, Dataset, dataset_id, owner)
    if row.status == DatasetStatus.validating:
        raise HTTPException(status.HTTP_409_CONFLICT, "the dataset is being validated; its images show when that ends")
    if row.status == DatasetStatus.failed:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "the dataset failed to convert, so it has no images to show; its problems say what to fix",
        )
    index = dataset_records(settings, dataset_id) / IMAGE_INDEX_FILE
    if not index.is_file():
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"dataset {dataset_id!r} was converted before the service indexed images; upload it again to see them",
        )
    return index


def _public(entry: dict[str, Any]) -> ImagePublic:
    return ImagePublic.model_validate({**entry, "has_file": entry["in_upload"]})


@router.get("/{dataset_id}/images", responses=_RESPONSES)
def list_images(
    dataset_id: str,
    session: SessionDep,
    owner: CurrentOwner,
    settings: SettingsDep,
    split: ImageSplit | None = None,
    label: Annotated[str | None, Query(alias="class", description="only images with a box of this class")] = None,
    problem: Annotated[str | None, Query(description="only images with a problem of this code")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> ImagesPublic:
    """A dataset's images, kept and dropped, with boxes and problems: those with problems first, then by path."""
    index = _index(session, settings, dataset_id, owner)
    items, count = page(index, split, label, problem, limit, offset)
    return ImagesPublic(items=[_public(entry) for entry in items], count=count)


@router.get(
    "/{dataset_id}/images/{image_id}/thumbnail",
    response_class=Response,
    responses={**_RESPONSES, 200: {"content": {"image/jpeg": {}}, "description": "a JPEG with the boxes drawn"}},
)
def image_thumbnail(
    dataset_id: str,
    image_id: ImageId,
    session: SessionDep,
    owner: CurrentOwner,
    settings: SettingsDep,
    size: Annotated[int, Query(ge=16, le=MAX_THUMBNAIL, description="longest side in pixels")] = 256,
    boxes: Annotated[bool, Query(description="draw the boxes (false: the image alone, to draw over)")] = True,
) -> Response:
    """One image as a JPEG (longest side at most `size`) with its boxes drawn, dropped ones in red."""
    index = _index(session, settings, dataset_id, owner)
    entry = find(index, image_id)
    if entry is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"image {image_id!r} is not in dataset {dataset_id!r}; GET /v1/datasets/{dataset_id}/images lists them",
        )
    if not entry["in_upload"]:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"{entry['path']!r} came out of an uploaded TFRecord: no file of the upload to show",
        )
    try:
        data = read_member(dataset_input(settings, dataset_id) / UPLOAD_FILE, entry["path"])
        jpeg = thumbnail(data, entry if boxes else {**entry, "boxes": []}, size, settings.max_image_pixels)
    except ImageUnavailableError as err:
        code = status.HTTP_404_NOT_FOUND if err.missing else status.HTTP_409_CONFLICT
        raise HTTPException(code, f"cannot show {entry['path']!r}: {err}") from None
    return Response(jpeg, media_type="image/jpeg")
