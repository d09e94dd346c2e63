"""Fixed dataset versions: accepted fixes (from the label-error finder, or any client) make a new dataset from a
ready one's records; the old dataset stays as it is, so jobs and evaluations on it keep their meaning."""

from __future__ import annotations

import json

from fastapi import APIRouter, HTTPException, Request, Response, status

from app.auth import TRAIN, CurrentOwner, get_owned
from app.deps import SessionDep, SettingsDep
from app.idempotency import IdempotencyDep, create_once, forget, mark_replayed, replay_body
from app.schemas import AUTH_RESPONSES, DatasetPublic, DatasetVersionCreate, ErrorDetail
from core import states
from core.deletion import remove
from core.layout import FIXES_FILE, dataset_dir
from core.queue import send_convert
from core.store import dataset_input_prefix, share_files
from core.tables import Dataset, DatasetStatus, new_id

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=AUTH_RESPONSES, dependencies=[TRAIN])


@router.post(
    "/{dataset_id}/versions",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        400: {"model": ErrorDetail, "description": "the body is not readable JSON (e.g. not UTF-8)"},
        404: {"model": ErrorDetail},
        409: {"model": ErrorDetail, "description": "the dataset is not ready"},
        422: {"model": ErrorDetail, "description": "every fix that cannot apply, one per entry"},
        503: {"model": ErrorDetail, "description": "the queue is unreachable"},
    },
)
def create_version(
    dataset_id: str,
    body: DatasetVersionCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    owner: CurrentOwner,
    key: IdempotencyDep,
) -> DatasetPublic:
    """A new dataset: this one's images and split with the fixes applied (delete_box, add_box, change_class,
    replace_box; boxes named by the image and annotation ids of an evaluation's findings). It is converted and
    validated like an upload (status `validating`, then `ready`), ready for the next job. With an
    Idempotency-Key, a retry returns the first version."""
    request_hash, earlier = replay_body(session, key, request, response, body, Dataset)
    if earlier is not None:
        return DatasetPublic.from_row(earlier)
    parent = get_owned(session, Dataset, dataset_id, owner)
    if parent.status != DatasetStatus.ready:
        raise HTTPException(status.HTTP_409_CONFLICT, f"the dataset is {parent.status}; only a ready one can be fixed")
    classes = sorted((parent.label_map or {}).values())
    problems = [
        {"loc": ["body", "fixes", i], "msg": problem, "type": "value_error"}
        for i, fix in enumerate(body.fixes)
        if (problem := fix.problem(classes)) is not None
    ]
    changed = [fix.annotation_id for fix in body.fixes if fix.annotation_id is not None]
    twice = sorted({a for a in changed if changed.count(a) > 1})
    if twice:
        problems.append(
            {
                "loc": ["body", "fixes"],
                "msg": f"boxes {twice[:5]} have more than one fix; keep one",
                "type": "value_error",
            }
        )
    if problems:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, problems)
    new = Dataset(
        id=new_id(),
        owner=owner,
        name=body.name or f"{parent.name} (fixed)",
        format="tfrecord",
        val_fraction=parent.val_fraction,
        upload_bytes=0,
        requested_label_map=parent.label_map,
    )
    folder = dataset_dir(settings, new.id)

    def store() -> Dataset:
        try:
            folder.mkdir(parents=True)
            document = {"parent_id": parent.id, "fixes": [fix.model_dump(mode="json") for fix in body.fixes]}
            (folder / FIXES_FILE).write_text(json.dumps(document))
            share_files(settings, dataset_input_prefix(new.id), [folder / FIXES_FILE], move=True)
            states.add_dataset(session=session, dataset=new)
        except BaseException:
            session.rollback()
            remove(folder)
            raise
        return new

    row = create_once(session, key, request_hash, new, store)
    if row is not new:
        mark_replayed(response)
        return DatasetPublic.from_row(row)
    try:
        send_convert(row.id)
    except Exception as err:
        states.delete_dataset(session=session, dataset=row)
        forget(session, key)
        remove(folder)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"the job queue is unreachable ({err}); try again later"
        ) from err
    return DatasetPublic.from_row(row)
