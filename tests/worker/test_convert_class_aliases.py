"""The conversion task applies the class aliases and label map stored on the dataset row (a raccoon set that
spells its one class two ways)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.tables import DatasetStatus
from tests.helpers.respelled import respelled_raccoon_zip
from worker.tasks import convert_dataset


def test_conversion_merges_the_rows_class_aliases(service: Path, rows: Any, tmp_path: Path) -> None:
    upload = respelled_raccoon_zip(tmp_path / "raccoon.zip")
    dataset_id = rows.add_dataset(upload, class_aliases={"Raccoon": "raccoon"})
    convert_dataset(dataset_id)
    dataset = rows.dataset(dataset_id)
    assert dataset.status == DatasetStatus.ready, dataset.error
    assert dataset.label_map == {"1": "raccoon"}
    assert dataset.num_boxes == 21
    assert not [p for p in dataset.report["problems"] if p["code"] == "similar_class_names"]


def test_conversion_numbers_classes_as_the_requested_label_map(service: Path, rows: Any, tmp_path: Path) -> None:
    upload = respelled_raccoon_zip(tmp_path / "raccoon.zip", spelling="dog")
    dataset_id = rows.add_dataset(upload, requested_label_map={"1": "raccoon", "2": "dog"})
    convert_dataset(dataset_id)
    dataset = rows.dataset(dataset_id)
    assert dataset.status == DatasetStatus.ready, dataset.error
    assert dataset.label_map == {"1": "raccoon", "2": "dog"}
