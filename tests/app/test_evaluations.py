"""Evaluations through the API: submit (queued on the broker), show, list by dataset and model, cancel, and every
422 (classes the model does not know, a split without images, a format it was not exported in, a threshold its
file cannot count at). The worker's side runs a real model in tests/worker/test_job_task.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.tables import Dataset, JobStatus
from effdet.formats import FormatScore, FormatsManifest, write_manifest

TASK = "worker.tasks.run_evaluation"


@pytest.fixture
def model_id(sqlite_service: Any, tmp_path: Path) -> str:
    """A model of one class, 'raccoon', exported as saved_model and tflite (min_score 0.4)."""
    folder = tmp_path / "model"
    folder.mkdir()
    scores = {name: FormatScore(file=name, size_bytes=1) for name in ("saved_model", "tflite")}
    write_manifest(folder, FormatsManifest(min_score=0.4, mean_rgb=[0, 0, 0], formats=scores, default_runtime="tflite"))
    job = sqlite_service.job(sqlite_service.dataset(), JobStatus.succeeded)
    return str(sqlite_service.model(job, folder))


def _messages(response: Any) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {entry["loc"][-1]: entry["msg"] for entry in response.json()["detail"]}


def test_an_evaluation_is_queued_shown_listed_by_dataset_and_cancelled(sqlite_service: Any, model_id: str) -> None:
    client = sqlite_service.client
    dataset = sqlite_service.dataset(val_images=2)
    other = sqlite_service.dataset(val_images=2)
    response = client.post(f"/v1/models/{model_id}/evaluations", json={"dataset_id": dataset})
    assert response.status_code == 202, response.text
    created = response.json()
    assert created["status"] == "queued"
    assert (created["split"], created["format"], created["score_threshold"]) == ("val", "tflite", 0.4), "defaults"
    assert created["model_name"] == "efficientdet-d0 v1"
    assert sqlite_service.broker_messages() == [TASK]
    second = client.post(
        f"/v1/models/{model_id}/evaluations",
        json={"dataset_id": other, "split": "all", "format": "saved_model", "score_threshold": 0.1},
    ).json()
    assert client.get(f"/v1/evaluations/{created['id']}").json() == created
    by_dataset = client.get("/v1/evaluations", params={"dataset_id": dataset}).json()
    assert [e["id"] for e in by_dataset["items"]] == [created["id"]]
    assert by_dataset["count"] == 1
    assert client.get("/v1/evaluations", params={"model_id": model_id}).json()["count"] == 2
    assert [e["id"] for e in client.get("/v1/evaluations").json()["items"]] == [second["id"], created["id"]]
    cancelled = client.post(f"/v1/evaluations/{created['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    again = client.post(f"/v1/evaluations/{created['id']}/cancel")
    assert again.status_code == 409
    assert "already ended" in again.json()["detail"]
    own = client.post(f"/v1/models/{model_id}/evaluations", json={"split": "train"})
    assert own.status_code == 202, own.text
    job = client.get(f"/v1/models/{model_id}").json()["job_id"]
    assert own.json()["dataset_id"] == client.get(f"/v1/jobs/{job}").json()["dataset_id"], "its training dataset"
    assert client.get("/v1/evaluations/nope").status_code == 404
    assert client.post("/v1/models/nope/evaluations", json={"dataset_id": dataset}).status_code == 404


def test_every_problem_of_a_request_is_a_422_that_says_what_to_fix(sqlite_service: Any, model_id: str) -> None:
    client = sqlite_service.client
    url = f"/v1/models/{model_id}/evaluations"
    two_classes = sqlite_service.dataset(val_images=0)
    with sqlite_service.session() as session:
        row = session.get(Dataset, two_classes)
        assert row is not None
        row.label_map = {"1": "raccoon", "2": "dog", "3": "cat"}
        session.commit()
    problems = _messages(client.post(url, json={"dataset_id": two_classes}))
    assert "classes the model does not know: cat, dog" in problems["dataset_id"]
    assert "class_aliases" in problems["dataset_id"]
    assert "no val images" in problems["split"]
    ready = sqlite_service.dataset(val_images=2)
    assert (
        "saved_model, tflite, not tflite_int8"
        in _messages(client.post(url, json={"dataset_id": ready, "format": "tflite_int8"}))["format"]
    )
    low = _messages(client.post(url, json={"dataset_id": ready, "format": "tflite", "score_threshold": 0.2}))
    assert "drops detections under 0.4" in low["score_threshold"]
    accepted = client.post(url, json={"dataset_id": ready, "format": "saved_model", "score_threshold": 0.2})
    assert accepted.status_code == 202, "the SavedModel counts at any threshold"
    assert "not found" in _messages(client.post(url, json={"dataset_id": "nope"}))["dataset_id"]
    validating = sqlite_service.dataset(status="validating")
    assert "not ready" in _messages(client.post(url, json={"dataset_id": validating}))["dataset_id"]
    assert client.post(url, json={"dataset_id": ready, "split": "test"}).status_code == 422
    assert client.post(url, json={"dataset_id": ready, "score_threshold": 2}).status_code == 422
    assert client.post(url, json={"dataset_id": ready, "colour": "red"}).status_code == 422
    assert sqlite_service.broker_messages() == [TASK], "only the accepted one was queued"


def test_findings_and_images_are_paged_filtered_and_wait_for_success(
    sqlite_service: Any, model_id: str, tmp_path: Path
) -> None:
    import json

    from core.layout import IMAGES_FILE, LABEL_ERRORS_FILE, evaluation_dir
    from core.tables import Evaluation, EvaluationStatus

    client = sqlite_service.client
    dataset = sqlite_service.dataset(val_images=2)
    created = client.post(f"/v1/models/{model_id}/evaluations", json={"dataset_id": dataset}).json()
    waiting = client.get(f"/v1/evaluations/{created['id']}/label-errors")
    assert waiting.status_code == 409
    assert "queued" in waiting.json()["detail"]
    issue = {"image_id": 1, "file_name": "a.jpg", "reason": "r", "gallery_id": "g1"}
    issues = [
        {
            **issue,
            "kind": "missing_box",
            "confidence": 0.9,
            "detection": {"label": "raccoon", "box": [1, 2, 3, 4], "score": 0.9},
        },
        {
            **issue,
            "kind": "spurious_box",
            "confidence": 0.7,
            "annotation_id": 100000,
            "label": "raccoon",
            "box": [5, 5, 9, 9],
        },
        {
            **issue,
            "kind": "loose_box",
            "confidence": 0.2,
            "annotation_id": 100001,
            "label": "raccoon",
            "box": [0, 0, 9, 9],
        },
    ]
    image = {"image_id": 1, "file_name": "a.jpg", "gallery_id": "g1", "width": 10, "height": 10, "errors": 2}
    folder = evaluation_dir(sqlite_service.settings, created["id"])
    folder.mkdir(parents=True)
    (folder / LABEL_ERRORS_FILE).write_text(json.dumps(issues))
    (folder / IMAGES_FILE).write_text(json.dumps([{**image, "boxes": [], "detections": []}]))
    with sqlite_service.session() as session:
        row = session.get(Evaluation, created["id"])
        assert row is not None
        row.status = EvaluationStatus.succeeded
        session.commit()
    url = f"/v1/evaluations/{created['id']}"
    page = client.get(f"{url}/label-errors", params={"limit": 2}).json()
    assert (page["count"], [i["kind"] for i in page["items"]]) == (3, ["missing_box", "spurious_box"])
    assert page["items"][0]["gallery_id"] == "g1"
    confident = client.get(f"{url}/label-errors", params={"min_confidence": 0.5, "kind": "spurious_box"}).json()
    assert [i["annotation_id"] for i in confident["items"]] == [100000]
    assert client.get(f"{url}/images").json()["items"][0]["errors"] == 2
    assert client.get(f"{url}/label-errors", params={"kind": "typo"}).status_code == 422


def test_a_models_val_images_come_worst_first_from_what_its_job_stored(sqlite_service: Any, tmp_path: Path) -> None:
    import json

    from core.layout import run_dir
    from effdet.layout import VAL_DETECTIONS_FILE

    job = sqlite_service.job(sqlite_service.dataset(), JobStatus.succeeded)
    model = sqlite_service.model(job, tmp_path)
    url = f"/v1/models/{model}/val-images"
    missing = sqlite_service.client.get(url)
    assert missing.status_code == 404
    assert "evaluate it on a dataset" in missing.json()["detail"]
    truth = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
            {"id": 2, "file_name": "b.jpg", "width": 50, "height": 50},
        ],
        "categories": [{"id": 1, "name": "raccoon"}],
        "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [0, 0, 20, 20]}],
    }
    detections = [
        {"image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10], "score": 0.9},  # a false alarm
        {"image_id": 1, "category_id": 1, "bbox": [50, 5, 10, 10], "score": 0.1},  # under the threshold
        {"image_id": 2, "category_id": 1, "bbox": [0, 0, 20, 21], "score": 0.8},  # found
    ]
    stored = run_dir(sqlite_service.settings, job) / VAL_DETECTIONS_FILE
    stored.parent.mkdir(parents=True)
    stored.write_text(json.dumps({"ground_truth": truth, "detections": detections}))
    page = sqlite_service.client.get(url).json()
    assert [(i["file_name"], i["errors"]) for i in page["items"]] == [("a.jpg", 1), ("b.jpg", 0)]
    assert [d["score"] for d in page["items"][0]["detections"]] == [0.9], "at the model's threshold"
    assert page["items"][1]["boxes"] == [{"label": "raccoon", "box": [0, 0, 20, 20], "score": None}]
