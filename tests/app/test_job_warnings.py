"""A job whose input size leaves more than a tenth of the dataset's boxes under 16 px is accepted with a warning
that names the input size that avoids it; raccoon's large objects give none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.tables import Job
from effdet.data.convert import ConversionReport, SplitSummary, inspect_dataset
from tests.helpers.advice import PLATE_WARNING_AT_320, add_ready_dataset, plate_photos_report

RACCOON = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "raccoon"


def _submit(service: Any, dataset: str, model: str, **hparams: Any) -> dict[str, Any]:
    body = {"dataset_id": dataset, "model": model, "hparams": hparams, "num_steps": 5}
    response = service.client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return dict(response.json())


def test_small_objects_at_the_input_size_give_a_warning_with_the_size_that_avoids_it(sqlite_service: Any) -> None:
    dataset = add_ready_dataset(sqlite_service, plate_photos_report())
    job = _submit(sqlite_service, dataset, "efficientdet-lite0")
    assert job["warnings"] == [PLATE_WARNING_AT_320]
    assert sqlite_service.row(Job, job["id"]).warnings == job["warnings"]
    assert sqlite_service.client.get(f"/v1/jobs/{job['id']}").json()["warnings"] == job["warnings"]
    assert _submit(sqlite_service, dataset, "efficientdet-lite0", image_size=768)["warnings"] == []


@pytest.mark.skipif(not RACCOON.is_dir(), reason="needs ../shared/data/raccoon")
def test_raccoon_gives_no_size_warning(sqlite_service: Any) -> None:
    inspection = inspect_dataset(RACCOON, format="voc", workers=1)
    report = ConversionReport(
        format=inspection.format,
        label_map=inspection.label_map,
        splits={"train": SplitSummary(images=inspection.images, boxes=inspection.stats.num_boxes, shards=[])},
        max_instances_per_image=inspection.stats.max_boxes_per_image,
        problems=inspection.problems,
        dropped_images=inspection.dropped_images,
        stats=inspection.stats,
        anchors=inspection.anchors,
        anchors_by_model=inspection.anchors_by_model,
    )
    dataset = add_ready_dataset(sqlite_service, report)
    for model in ("efficientdet-lite0", "efficientdet-d0"):
        assert _submit(sqlite_service, dataset, model)["warnings"] == []
    assert _submit(sqlite_service, dataset, "efficientdet-d0", image_size=128)["warnings"] == []


def test_old_reports_without_box_sizes_give_no_warning(sqlite_service: Any) -> None:
    report = plate_photos_report().model_dump(mode="json")
    del report["stats"]["input_sizes"]
    dataset = add_ready_dataset(sqlite_service, ConversionReport.model_validate(report))
    assert _submit(sqlite_service, dataset, "efficientdet-lite0")["warnings"] == []
