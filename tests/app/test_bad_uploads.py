"""The bad-upload corpus (tests/app/bad_uploads.py) through the API and the real conversion, on SQLite and
PostgreSQL: each case is refused with a 4xx that says what to fix, or converted to a dataset that fails with a
clear error or is ready and lists the defect by its code and file. Either way no stray file and no half-written
row is left: a refused upload adds nothing, an accepted one leaves exactly its row, upload.zip and tfrecords/."""

from __future__ import annotations

from typing import Any

import pytest

from core.tables import Dataset, DatasetStatus
from tests.app.bad_uploads import CORPUS, BadUpload
from worker.convert import run_conversion


def _state(service: Any) -> tuple[set[str], list[str], list[str]]:
    """The dataset ids in the database, the folders under datasets/ and the files under uploads/."""
    with service.session() as session:
        ids = set(session.scalars(session.query(Dataset.id).statement))
    folders = sorted(p.name for p in (service.data_dir / "datasets").iterdir())
    return ids, folders, sorted(p.name for p in (service.data_dir / "uploads").iterdir())


def _files(folder: Any) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.parent == folder)


def test_corpus_is_large_and_named_uniquely() -> None:
    names = [case.name for case in CORPUS]
    assert len(names) >= 30
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_bad_upload_is_refused_or_reported(module_backend_service: Any, case: BadUpload) -> None:
    service = module_backend_service
    ids, folders, uploads = _state(service)
    messages = len(service.broker_messages())
    files = {"file": ("dataset.zip", case.build(), "application/zip")}
    response = service.client.post("/v1/datasets", files=files, data=case.fields)
    if case.outcome == "rejected":
        assert response.status_code == case.status, response.text
        assert case.message in str(response.json()["detail"])
        assert _state(service) == (ids, folders, uploads), "a refused upload leaves no row and no file"
        assert len(service.broker_messages()) == messages
        return
    assert response.status_code == 202, response.text
    dataset_id = response.json()["id"]
    assert len(service.broker_messages()) == messages + 1
    run_conversion(dataset_id)
    row = service.row(Dataset, dataset_id)
    shown = service.client.get(f"/v1/datasets/{dataset_id}").json()
    codes = {(p["code"], p["file"].rsplit("/", 1)[-1]) for p in shown["problems"]}
    for code, file in case.problems:
        assert (code, file) in codes, f"{code} on {file} not among {sorted(codes)}"
    folder = service.data_dir / "datasets" / dataset_id
    if case.outcome == "failed":
        assert row.status == DatasetStatus.failed, row.status
        assert case.message in (row.error or ""), row.error
        assert "internal error" not in (row.error or "")
        assert _files(folder) == ["upload.zip"]
    else:
        assert row.status == DatasetStatus.ready, row.error
        assert row.num_images == case.images, shown["problems"]
        assert _files(folder) == ["tfrecords", "upload.zip"]
    after_ids, after_folders, after_uploads = _state(service)
    assert after_ids == ids | {dataset_id}
    assert after_folders == sorted({*folders, dataset_id})
    assert after_uploads == uploads == []
