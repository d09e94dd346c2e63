"""`effdet-client evaluations` against the in-process service: create without waiting, list by dataset, show a
result as tables (the per-class counts and the confusion matrix), cancel, and the 422's problems on stderr."""

from __future__ import annotations

import json
from pathlib import Path

from core.tables import Evaluation, EvaluationStatus, JobStatus
from tests.app.conftest import Service
from tests.effdet_client.conftest import Cli

RESULT = {
    "metrics": {
        "ap": 0.5,
        "ap50": 0.8,
        "ap75": 0.4,
        "ap_small": None,
        "ap_medium": 0.5,
        "ap_large": 0.6,
        "ar100": 0.7,
        "num_images": 2,
        "per_class": {"raccoon": {"ap": 0.5, "ap50": 0.8, "pr_curve": [[0.0, 1.0], [1.0, 0.5]]}},
    },
    "confusion": {
        "score_threshold": 0.3,
        "iou_threshold": 0.5,
        "labels": ["raccoon", "background"],
        "matrix": [[3, 1], [2, 0]],
        "image_errors": {"1": 2, "2": 1},
        "per_class": {
            "raccoon": {"true_positives": 3, "false_positives": 2, "misses": 1, "precision": 0.6, "recall": 0.75}
        },
    },
    "format": "saved_model",
    "split": "val",
    "ms_per_image": 41.5,
    "detection_threshold": 0.0,
}
"""A result as the worker writes it (the worker's own test runs a real model)."""


def test_create_list_show_and_cancel(cli: Cli, sqlite_service: Service, tmp_path: Path) -> None:
    dataset = sqlite_service.dataset(val_images=2)
    model = sqlite_service.model(sqlite_service.job(dataset, JobStatus.succeeded), tmp_path)
    created = json.loads(cli("evaluations", "create", model, "--dataset", dataset, "--no-wait", "--json").stdout)
    assert (created["status"], created["split"], created["format"]) == ("queued", "val", "saved_model")
    listed = json.loads(cli("evaluations", "list", "--dataset", dataset, "--json").stdout)
    assert [e["id"] for e in listed["items"]] == [created["id"]]
    table = cli("evaluations", "list", "--dataset", dataset)
    assert created["id"] in table.stdout
    assert "queued" in table.stdout
    with sqlite_service.session() as session:
        row = session.get(Evaluation, created["id"])
        assert row is not None
        row.status, row.result = EvaluationStatus.succeeded, RESULT
        session.commit()
    shown = cli("evaluations", "show", created["id"])
    assert shown.exit_code == 0, shown.output
    assert "ap 0.500, ap50 0.800" in shown.stdout
    assert "confusion matrix" in shown.stdout
    assert "0.750" in shown.stdout, "the recall at the threshold"
    assert cli("evaluations", "cancel", created["id"]).exit_code == 1, "it has ended"
    other = json.loads(cli("evaluations", "create", model, "--split", "train", "--no-wait", "--json").stdout)
    assert (other["dataset_id"], other["split"]) == (dataset, "train"), "by default the model's own dataset"
    assert json.loads(cli("evaluations", "cancel", other["id"], "--json").stdout)["status"] == "cancelled"


def test_a_rejected_evaluation_prints_each_problem(cli: Cli, sqlite_service: Service, tmp_path: Path) -> None:
    dataset = sqlite_service.dataset(val_images=0)
    model = sqlite_service.model(sqlite_service.job(dataset, JobStatus.succeeded), tmp_path)
    result = cli("evaluations", "create", model, "--dataset", dataset, "--format", "tflite")
    assert result.exit_code == 1
    assert "422" in result.stderr
    assert "no val images" in result.stderr
    assert "not tflite" in result.stderr


def test_label_errors_and_a_fixed_version_from_the_confident_findings(
    cli: Cli, sqlite_service: Service, tmp_path: Path
) -> None:
    from core.layout import FIXES_FILE, LABEL_ERRORS_FILE, dataset_dir, evaluation_dir

    dataset = sqlite_service.dataset(val_images=2)
    model = sqlite_service.model(sqlite_service.job(dataset, JobStatus.succeeded), tmp_path)
    created = json.loads(cli("evaluations", "create", model, "--dataset", dataset, "--no-wait", "--json").stdout)
    seen = {"image_id": 2, "file_name": "b.jpg", "label": "raccoon", "reason": "why"}
    detection = {"label": "raccoon", "box": [1.0, 2.0, 30.0, 40.0], "score": 0.9}
    issues = [
        {**seen, "kind": "missing_box", "confidence": 0.9, "label": None, "detection": detection},
        {
            **seen,
            "kind": "loose_box",
            "confidence": 0.6,
            "annotation_id": 200001,
            "box": [0, 0, 9, 9],
            "detection": detection,
        },
        {**seen, "kind": "spurious_box", "confidence": 0.55, "annotation_id": 200000, "box": [50, 50, 9, 9]},
        {**seen, "kind": "spurious_box", "confidence": 0.1, "annotation_id": 200002, "box": [70, 70, 9, 9]},
    ]
    folder = evaluation_dir(sqlite_service.settings, created["id"])
    folder.mkdir(parents=True)
    (folder / LABEL_ERRORS_FILE).write_text(json.dumps(issues))
    with sqlite_service.session() as session:
        row = session.get(Evaluation, created["id"])
        assert row is not None
        row.status, row.result = EvaluationStatus.succeeded, RESULT
        session.commit()
    listed = cli("evaluations", "label-errors", created["id"], "--min-confidence", 0.5)
    assert listed.exit_code == 0, listed.output
    assert "3 findings" in listed.stdout
    fixed = cli("datasets", "fix", "--from-evaluation", created["id"], "--json")
    assert fixed.exit_code == 0, fixed.output
    version = json.loads(fixed.stdout)
    assert version["status"] == "validating"
    written = json.loads((dataset_dir(sqlite_service.settings, version["id"]) / FIXES_FILE).read_text())
    assert written["parent_id"] == dataset
    assert written["fixes"] == [
        {"action": "add_box", "image_id": 2, "annotation_id": None, "label": "raccoon", "box": [1.0, 2.0, 30.0, 40.0]},
        {"action": "replace_box", "image_id": 2, "annotation_id": 200001, "label": None, "box": [1.0, 2.0, 30.0, 40.0]},
        {"action": "delete_box", "image_id": 2, "annotation_id": 200000, "label": None, "box": None},
    ]
