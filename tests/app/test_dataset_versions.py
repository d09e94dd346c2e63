"""Fixed dataset versions through the API: accepted fixes make a new validating dataset queued for conversion
(the old one untouched), and every fix that cannot apply is a 422 naming it. The worker's side, which applies the
fixes to real records, runs in tests/worker/test_job_task.py."""

from __future__ import annotations

import json
from typing import Any

from core.layout import FIXES_FILE, dataset_dir
from core.tables import Dataset

TASK = "worker.tasks.convert_dataset"


def test_fixes_make_a_new_version_queued_for_conversion(sqlite_service: Any) -> None:
    parent = sqlite_service.dataset()
    fixes = [
        {"action": "delete_box", "image_id": 3, "annotation_id": 300001},
        {"action": "add_box", "image_id": 3, "label": "raccoon", "box": [10, 20, 30, 40]},
        {"action": "replace_box", "image_id": 7, "annotation_id": 700000, "box": [1, 2, 3, 4]},
    ]
    response = sqlite_service.client.post(f"/v1/datasets/{parent}/versions", json={"fixes": fixes})
    assert response.status_code == 202, response.text
    version = response.json()
    assert (version["status"], version["name"], version["format"]) == ("validating", "raccoons (fixed)", "tfrecord")
    assert version["id"] != parent
    written = json.loads((dataset_dir(sqlite_service.settings, version["id"]) / FIXES_FILE).read_text())
    assert written["parent_id"] == parent
    assert [f["action"] for f in written["fixes"]] == ["delete_box", "add_box", "replace_box"]
    assert sqlite_service.broker_messages() == [TASK]
    assert sqlite_service.row(Dataset, parent).status == "ready", "the old version stays"


def test_each_fix_that_cannot_apply_is_named_in_the_422(sqlite_service: Any) -> None:
    parent = sqlite_service.dataset()
    fixes = [
        {"action": "delete_box", "image_id": 3},
        {"action": "change_class", "image_id": 3, "annotation_id": 400000, "label": "raccoon"},
        {"action": "add_box", "image_id": 3, "label": "dog", "box": [0, 0, 5, 5]},
        {"action": "replace_box", "image_id": 5, "annotation_id": 500000, "box": [0, 0, 0, 5]},
    ]
    response = sqlite_service.client.post(f"/v1/datasets/{parent}/versions", json={"fixes": fixes})
    assert response.status_code == 422
    messages = {entry["loc"][-1]: entry["msg"] for entry in response.json()["detail"]}
    assert "needs the annotation_id" in messages[0]
    assert "not a box of image 3" in messages[1]
    assert "classes (raccoon), not 'dog'" in messages[2]
    assert "positive width and height" in messages[3]
    twice = [{"action": "delete_box", "image_id": 1, "annotation_id": 100000}] * 2
    again = sqlite_service.client.post(f"/v1/datasets/{parent}/versions", json={"fixes": twice})
    assert "more than one fix" in again.text
    empty = sqlite_service.client.post(f"/v1/datasets/{parent}/versions", json={"fixes": []})
    assert empty.status_code == 422
    validating = sqlite_service.dataset(status="validating")
    busy = sqlite_service.client.post(f"/v1/datasets/{validating}/versions", json={"fixes": twice[:1]})
    assert busy.status_code == 409
    assert sqlite_service.client.post("/v1/datasets/nope/versions", json={"fixes": twice[:1]}).status_code == 404
    assert sqlite_service.broker_messages() == []
    assert sqlite_service.count(Dataset) == 2, "nothing half-made"
