"""Datasets: upload a zip (streamed to disk, checked, queued for validation and conversion), list, show, re-label
(convert again with new class aliases or label map), delete."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.auth import TRAIN, CurrentOwner, get_owned, owned
from app.callbacks import add_callbacks, check_callbacks
from app.deletion import DELETE_RESPONSES, delete_owned
from app.deps import EngineDep, SessionDep, SettingsDep
from app.idempotency import (
    IdempotencyDep,
    IdempotencyKey,
    create_once,
    fingerprint,
    forget,
    mark_replayed,
    replay,
)
from app.limits import check_storage
from app.schemas import (
    AUTH_RESPONSES,
    MAX_OFFSET,
    ClassAliases,
    DatasetPublic,
    DatasetRelabel,
    DatasetsPublic,
    ErrorDetail,
    RequestedLabelMap,
    UploadFormat,
)
from app.storage import move_atomic
from app.uploads import check_zip, receive_file_form
from core import states
from core.deletion import remove
from core.layout import dataset_dir, records_dir, upload_path, uploads_dir
from core.queue import send_convert
from core.settings import Settings
from core.store import dataset_input_prefix, holds, records_prefix, share_files, unshare
from core.tables import FINISHED, Dataset, DatasetStatus, Job, new_id

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=AUTH_RESPONSES, dependencies=[TRAIN])

_FORMATS: list[str] = list(UploadFormat.__args__)  # type: ignore[attr-defined]
_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "a .zip of images and annotations (or of automl TFRecord files)",
                        },
                        "format": {"type": "string", "enum": _FORMATS, "default": "auto"},
                        "name": {"type": "string", "maxLength": 200, "description": "default: the zip's file name"},
                        "val_fraction": {
                            "type": "number",
                            "default": 0.1,
                            "exclusiveMinimum": 0,
                            "exclusiveMaximum": 1,
                            "description": "share of images held out for evaluation",
                        },
                        "callback_url": {
                            "type": "string",
                            "maxLength": 2048,
                            "description": "an http(s) URL that gets a signed POST when the conversion ends",
                        },
                        "class_aliases": {
                            "type": "string",
                            "description": 'JSON object alias -> class name merging spellings: {"lp": "licence plate"}',
                        },
                        "label_map": {
                            "type": "string",
                            "description": 'JSON object class id (from 1) -> name fixing ids: {"1": "plate"}',
                        },
                    },
                },
                "encoding": {"file": {"contentType": "application/zip"}},
            }
        },
    }
}


class _UploadFields(BaseModel):
    """The text fields of an upload form."""

    name: str = Field(min_length=1, max_length=200)
    format: UploadFormat = "auto"
    val_fraction: float = Field(0.1, gt=0, lt=1)
    class_aliases: ClassAliases = None
    label_map: RequestedLabelMap = None
    callback_url: str | None = Field(None, max_length=2048)

    @field_validator("class_aliases", "label_map", mode="before")
    @classmethod
    def _json(cls, value: object, info: ValidationInfo) -> object:
        """Form fields are text: the class fields hold JSON objects."""
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError as err:
            example = '{"lp": "licence plate"}' if info.field_name == "class_aliases" else '{"1": "licence plate"}'
            raise ValueError(
                f"{info.field_name} is not valid JSON ({err}); send a JSON object such as {example}"
            ) from None

    @field_validator("name")
    @classmethod
    def _printable(cls, name: str) -> str:
        """Control characters (a NUL above all, which PostgreSQL cannot store) have no place in a name."""
        if any(ord(char) < 32 or ord(char) == 127 for char in name):
            raise ValueError("the name holds a control character (e.g. NUL or a line break); use printable text")
        return name


def _fields(form: dict[str, str], filename: str | None) -> _UploadFields:
    default_name = Path(filename or "dataset").stem or "dataset"
    try:
        return _UploadFields.model_validate({"name": default_name, **{k: v for k, v in form.items() if v != ""}})
    except ValidationError as err:
        problems = [{"loc": ["body", *map(str, e["loc"])], "msg": e["msg"], "type": e["type"]} for e in err.errors()]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, problems) from None


def _forget_files(settings: Settings, dataset_id: str) -> None:
    """Remove what a dataset that was not created left, here and in a bucket store (best effort)."""
    remove(dataset_dir(settings, dataset_id))
    try:
        unshare(settings, dataset_input_prefix(dataset_id))
    except Exception as err:
        log.warning("dataset %s: its upload stays in the store, unreachable (%s)", dataset_id, err)


def _register(
    engine: Engine,
    settings: Settings,
    row: Dataset,
    part: Path,
    callbacks: list[str],
    key: IdempotencyKey | None,
    request_hash: str,
) -> tuple[DatasetPublic, bool]:
    """Move the checked upload into place, create the row, then queue conversion (undone if a step fails, e.g. a
    full disk or an unreachable database or queue: neither the files nor the row are left). With an idempotency
    key, what an earlier request with it created is returned instead (and True)."""
    with Session(engine, expire_on_commit=False) as session:
        if (earlier := replay(session, key, request_hash, Dataset)) is not None:
            return DatasetPublic.from_row(earlier), True
        check_storage(session, settings, row.owner, row.upload_bytes)
        add_callbacks(session, row.owner, callbacks, row.id)

        def store() -> Dataset:
            try:
                move_atomic(part, upload_path(settings, row.id))
                share_files(settings, dataset_input_prefix(row.id), [upload_path(settings, row.id)], move=True)
                states.add_dataset(session=session, dataset=row)
            except BaseException:
                session.rollback()
                _forget_files(settings, row.id)
                raise
            return row

        stored = create_once(session, key, request_hash, row, store)
        if stored is not row:
            return DatasetPublic.from_row(stored), True
        try:
            send_convert(row.id)
        except Exception as err:
            states.delete_dataset(session=session, dataset=row)
            forget(session, key)
            _forget_files(settings, row.id)
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, f"the job queue is unreachable ({err}); upload again later"
            ) from err
        return DatasetPublic.from_row(row), False


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra=_UPLOAD_BODY,
    responses={
        413: {
            "model": ErrorDetail,
            "description": "upload, file count or unpacked size over the limits, or an owner over its stored bytes",
        },
        415: {"model": ErrorDetail, "description": "not multipart/form-data"},
        422: {"model": ErrorDetail, "description": "not a zip, unsafe paths or links, bad form fields"},
        507: {"model": ErrorDetail, "description": "the server's data volume is full"},
    },
)
async def upload_dataset(
    request: Request,
    response: Response,
    owner: CurrentOwner,
    settings: SettingsDep,
    engine: EngineDep,
    key: IdempotencyDep,
) -> DatasetPublic:
    """Upload a dataset zip; it is validated and converted in the background (status `validating`). With an
    Idempotency-Key, a retry of the same upload returns the first dataset."""
    dataset_id = new_id()
    part = uploads_dir(settings) / f"{dataset_id}.part"
    try:
        form = await receive_file_form(request, part, settings.max_upload_bytes)
        fields = _fields(form.fields, form.filename)
        request_hash = fingerprint(request.url.path, json.dumps(sorted(form.fields.items())), form.sha256)
        await run_in_threadpool(check_zip, part, settings)
        row = Dataset(
            id=dataset_id,
            owner=owner,
            name=fields.name,
            format=fields.format,
            val_fraction=fields.val_fraction,
            upload_bytes=form.size,
            class_aliases=fields.class_aliases,
            requested_label_map=fields.label_map,
        )
        callbacks = [fields.callback_url] if fields.callback_url else []
        await run_in_threadpool(check_callbacks, callbacks, settings, "callback_url")
        public, replayed = await run_in_threadpool(_register, engine, settings, row, part, callbacks, key, request_hash)
        if replayed:
            mark_replayed(response)
        return public
    finally:
        part.unlink(missing_ok=True)


@router.get("")
def list_datasets(
    session: SessionDep,
    owner: CurrentOwner,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> DatasetsPublic:
    """Your datasets, newest first."""
    count = session.scalar(owned(select(func.count()).select_from(Dataset), Dataset, owner)) or 0
    rows = session.scalars(
        owned(select(Dataset), Dataset, owner).order_by(Dataset.created_at.desc()).limit(limit).offset(offset)
    )
    return DatasetsPublic(items=[DatasetPublic.from_row(row) for row in rows], count=count)


@router.get("/{dataset_id}", responses={404: {"model": ErrorDetail}})
def get_dataset(dataset_id: str, session: SessionDep, owner: CurrentOwner) -> DatasetPublic:
    """One dataset: status, classes, counts, statistics, problems and the anchor suggestion."""
    return DatasetPublic.from_row(get_owned(session, Dataset, dataset_id, owner))


@router.delete(
    "/{dataset_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=DELETE_RESPONSES,
)
def delete_dataset(dataset_id: str, session: SessionDep, owner: CurrentOwner, settings: SettingsDep) -> None:
    """Delete a dataset, its files and the evaluations run on it (refused while it is being validated or a job
    uses it: delete the jobs first)."""
    delete_owned(session, settings, Dataset, dataset_id, owner)


@router.patch(
    "/{dataset_id}",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        400: {"model": ErrorDetail, "description": "the body is not readable JSON (e.g. not UTF-8)"},
        404: {"model": ErrorDetail},
        409: {"model": ErrorDetail, "description": "validating, used by a queued or running job, or no upload"},
        422: {"model": ErrorDetail, "description": "bad class_aliases or label_map"},
    },
)
def relabel_dataset(
    dataset_id: str, relabel: DatasetRelabel, session: SessionDep, owner: CurrentOwner, settings: SettingsDep
) -> DatasetPublic:
    """Re-label a dataset (class_aliases, label_map) and convert it again from its upload (status `validating`)."""
    row = get_owned(session, Dataset, dataset_id, owner)
    _check_relabel(session, row, settings)
    given = relabel.model_fields_set
    aliases = relabel.class_aliases if "class_aliases" in given else row.class_aliases
    label_map = relabel.label_map if "label_map" in given else row.requested_label_map
    records = records_dir(settings, dataset_id)
    aside = records.with_name(f"{records.name}.relabel-{uuid.uuid4().hex}")
    if records.exists():
        records.rename(aside)  # the worker must not take the old records for converted ones
    changed = states.relabel_dataset(
        session=session,
        dataset=row,
        class_aliases=aliases,
        label_map={int(k): str(v) for k, v in label_map.items()} if label_map else None,
    )
    if not changed:
        if aside.exists():
            aside.rename(records)
        _check_relabel(session, row, settings)
        raise HTTPException(status.HTTP_409_CONFLICT, "the dataset changed meanwhile; try again")
    remove(aside)
    unshare(settings, records_prefix(dataset_id))  # converted again: no machine may take the old ones
    try:
        send_convert(dataset_id)
    except Exception as err:  # the sweeper re-sends a validating dataset no worker took
        log.warning("dataset %s: re-label queued later, the job queue is unreachable: %s", dataset_id, err)
    return DatasetPublic.from_row(row)


def _check_relabel(session: Session, row: Dataset, settings: Settings) -> None:
    """409 with what to wait for when a dataset cannot be re-labelled now."""
    session.refresh(row)
    if row.status == DatasetStatus.validating:
        raise HTTPException(status.HTTP_409_CONFLICT, "the dataset is being validated; re-label it when that ends")
    unfinished = [s.value for s in FINISHED]
    jobs = (
        session.scalar(
            select(func.count()).select_from(Job).where(Job.dataset_id == row.id, Job.status.not_in(unfinished))
        )
        or 0
    )
    if jobs:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"{jobs} queued or running job(s) use this dataset; re-label it when they end (or cancel them)",
        )
    if not holds(settings, dataset_input_prefix(row.id), upload_path(settings, row.id)):
        raise HTTPException(
            status.HTTP_409_CONFLICT, "the dataset's upload is gone, so it cannot be converted again; upload it again"
        )
