"""Fixed dataset versions: accepted fixes (from the label-error finder, or any client) make a new dataset from a
ready one's records; the old dataset stays as it is, so jobs and evaluations on it keep their meaning."""

from __future__ import annotations

import json

from fastapi import APIRouter, HTTPException, status

from app.auth import CurrentOwner, get_owned
from app.deps import SessionDep, SettingsDep
from app.schemas import AUTH_RESPONSES, DatasetPublic, DatasetVersionCreate, ErrorDetail
from app.storage import remove
from core import states
from core.layout import FIXES_FILE, dataset_dir
from core.queue import send_convert
from core.tables import Dataset, DatasetStatus

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=AUTH_RESPONSES)


@router.post(
    "/{dataset_id}/versions",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        404: {"model": ErrorDetail},
        409: {"model": ErrorDetail, "description": "the dataset is not ready"},
        422: {"model": ErrorDetail, "description": "every fix that cannot apply, one per entry"},
        503: {"model": ErrorDetail, "description": "the queue is unreachable"},
    },
)
def create_version(
    dataset_id: str, body: DatasetVersionCreate, session: SessionDep, settings: SettingsDep, owner: CurrentOwner
) -> DatasetPublic:
    """A new dataset: this one's images and split with the fixes applied (delete_box, add_box, change_class,
    replace_box; boxes named by the image and annotation ids of an evaluation's findings). It is converted and
    validated like an upload (status `validating`, then `ready`), ready for the next job."""
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
    row = Dataset(
        owner=owner,
        name=body.name or f"{parent.name} (fixed)",
        format="tfrecord",
        val_fraction=parent.val_fraction,
        upload_bytes=0,
        requested_label_map=parent.label_map,
    )
    session.add(row)
    session.flush()
    folder = dataset_dir(settings, row.id)
    try:
        folder.mkdir(parents=True)
        document = {"parent_id": parent.id, "fixes": [fix.model_dump(mode="json") for fix in body.fixes]}
        (folder / FIXES_FILE).write_text(json.dumps(document))
        states.add_dataset(session=session, dataset=row)
    except BaseException:
        session.rollback()
        remove(folder)
        raise
    try:
        send_convert(row.id)
    except Exception as err:
        states.delete_dataset(session=session, dataset=row)
        remove(folder)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"the job queue is unreachable ({err}); try again later"
        ) from err
    return DatasetPublic.from_row(row)
