"""Class merging: uploads with class_aliases / label_map, the similar_class_names warning, and PATCH re-labelling
a dataset converted for real by the worker's code (a raccoon set that spells its one class two ways)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.tables import Dataset, DatasetStatus, JobStatus
from tests.app.conftest import Service, start_service, stop_service
from tests.helpers.respelled import respelled_raccoon_zip
from worker.convert import run_conversion

BIG = str(8 * 2**20)
MERGE = {"Raccoon": "raccoon"}


@pytest.fixture
def relabel_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    """A SQLite service whose limits take the 20-image raccoon zip."""
    service = start_service(
        monkeypatch,
        tmp_path / "var",
        None,
        EFFDET_MAX_UPLOAD_BYTES=BIG,
        EFFDET_MAX_UNCOMPRESSED_BYTES=BIG,
        EFFDET_MAX_FILES="100",
    )
    yield service
    stop_service(service)


@pytest.fixture(scope="module")
def respelled(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return respelled_raccoon_zip(tmp_path_factory.mktemp("respelled") / "raccoon.zip").read_bytes()


def _upload(service: Service, data: bytes, **fields: str) -> Any:
    return service.client.post("/v1/datasets", files={"file": ("raccoon.zip", data)}, data=fields)


def _converted(service: Service, data: bytes, **fields: str) -> dict[str, Any]:
    response = _upload(service, data, **fields)
    assert response.status_code == 202, response.text
    run_conversion(response.json()["id"])
    body: dict[str, Any] = service.client.get(f"/v1/datasets/{response.json()['id']}").json()
    assert body["status"] == DatasetStatus.ready, body["error"]
    return body


def _similar(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [problem for problem in body["problems"] if problem["code"] == "similar_class_names"]


def test_upload_with_class_aliases_trains_one_class(relabel_service: Service, respelled: bytes) -> None:
    body = _converted(relabel_service, respelled, class_aliases='{"Raccoon": "raccoon"}', label_map='{"1": "raccoon"}')
    assert body["label_map"] == {"1": "raccoon"}
    assert body["num_boxes"] == 21
    assert body["class_aliases"] == MERGE
    assert body["requested_label_map"] == {"1": "raccoon"}
    assert not _similar(body)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"class_aliases": '{"Raccoon": '}, "class_aliases is not valid JSON"),
        ({"class_aliases": '["Raccoon"]'}, "JSON object"),
        ({"class_aliases": '{"raccoon": "raccoon"}'}, "to itself"),
        ({"class_aliases": '{"a": "b", "b": "c"}'}, "chains"),
        ({"label_map": '{"0": "raccoon"}'}, "positive integer"),
        ({"label_map": '{"1": "raccoon", "2": "raccoon"}'}, "more than one id"),
    ],
)
def test_upload_rejects_bad_class_fields_with_nothing_written(
    relabel_service: Service, respelled: bytes, fields: dict[str, str], words: str
) -> None:
    response = _upload(relabel_service, respelled, **fields)
    assert response.status_code == 422
    assert words in response.text
    assert relabel_service.count(Dataset) == 0
    assert relabel_service.leftovers() == []
    assert relabel_service.broker_messages() == []


def test_relabel_merges_the_suggested_aliases_and_converts_again(relabel_service: Service, respelled: bytes) -> None:
    service = relabel_service
    body = _converted(service, respelled)
    dataset_id = body["id"]
    assert body["label_map"] == {"1": "Raccoon", "2": "raccoon"}
    (warning,) = _similar(body)
    assert warning["severity"] == "warning"
    assert warning["class_aliases"] == MERGE
    assert '"raccoon" (19 boxes) and "Raccoon" (2 boxes)' in warning["message"]

    response = service.client.patch(f"/v1/datasets/{dataset_id}", json={"class_aliases": warning["class_aliases"]})
    assert response.status_code == 202, response.text
    assert response.json()["status"] == DatasetStatus.validating
    assert response.json()["class_aliases"] == MERGE
    assert response.json()["label_map"] is None
    assert response.json()["problems"] == []
    folder = service.data_dir / "datasets" / dataset_id
    assert sorted(path.name for path in folder.iterdir()) == ["upload.zip"], "old records removed, upload kept"
    assert service.broker_messages().count("worker.tasks.convert_dataset") == 2

    run_conversion(dataset_id)
    after = service.client.get(f"/v1/datasets/{dataset_id}").json()
    assert after["status"] == DatasetStatus.ready, after["error"]
    assert after["label_map"] == {"1": "raccoon"}
    assert after["num_boxes"] == 21
    assert after["class_aliases"] == MERGE
    assert not _similar(after)

    undone = service.client.patch(f"/v1/datasets/{dataset_id}", json={"class_aliases": None})
    assert undone.status_code == 202, undone.text
    run_conversion(dataset_id)
    assert service.client.get(f"/v1/datasets/{dataset_id}").json()["label_map"] == {"1": "Raccoon", "2": "raccoon"}


def test_relabel_waits_for_validation_and_unfinished_jobs(relabel_service: Service, respelled: bytes) -> None:
    service = relabel_service
    response = _upload(service, respelled)
    dataset_id = response.json()["id"]
    validating = service.client.patch(f"/v1/datasets/{dataset_id}", json={"class_aliases": MERGE})
    assert validating.status_code == 409
    assert "being validated" in validating.text

    run_conversion(dataset_id)
    service.job(dataset_id, status=JobStatus.succeeded)
    job_id = service.job(dataset_id, status=JobStatus.training)
    busy = service.client.patch(f"/v1/datasets/{dataset_id}", json={"class_aliases": MERGE})
    assert busy.status_code == 409
    assert "1 queued or running job(s)" in busy.text
    row = service.row(Dataset, dataset_id)
    assert row.status == DatasetStatus.ready
    assert row.class_aliases is None
    assert (service.data_dir / "datasets" / dataset_id / "tfrecords" / "dataset.json").is_file()

    with service.session() as session:
        from core.tables import Job

        job = session.get(Job, job_id)
        assert job is not None
        job.status = JobStatus.failed
        session.commit()
    done = service.client.patch(f"/v1/datasets/{dataset_id}", json={"class_aliases": MERGE})
    assert done.status_code == 202, "finished jobs keep their own copies"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"class_aliases": {"raccoon": "raccoon"}}, "to itself"),
        ({"class_aliases": {"a": "b", "b": "c"}}, "chains"),
        ({"label_map": {"-2": "raccoon"}}, "positive integer"),
        ({"label_map": {"1": 3}}, "non-empty printable name"),
        ({"labels": {}}, "Extra inputs"),
    ],
)
def test_relabel_rejects_bad_fields_and_changes_nothing(
    relabel_service: Service, respelled: bytes, body: dict[str, Any], words: str
) -> None:
    dataset_id = _converted(relabel_service, respelled)["id"]
    response = relabel_service.client.patch(f"/v1/datasets/{dataset_id}", json=body)
    assert response.status_code == 422
    assert words in response.text
    assert relabel_service.row(Dataset, dataset_id).status == DatasetStatus.ready


def test_relabel_refuses_a_dataset_without_its_upload(relabel_service: Service) -> None:
    dataset_id = relabel_service.dataset()
    response = relabel_service.client.patch(f"/v1/datasets/{dataset_id}", json={"class_aliases": MERGE})
    assert response.status_code == 409
    assert "upload it again" in response.text
