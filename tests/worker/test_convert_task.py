"""The conversion task on real and broken uploads, called in-process with a temporary data dir."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from core.tables import DatasetStatus
from worker.tasks import convert_dataset

RACCOON = Path(__file__).resolve().parents[3] / "shared" / "data" / "raccoon"


@pytest.fixture(scope="module")
def raccoon_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real raccoon dataset (VOC: images/ + annotations/) zipped under one top folder."""
    target = tmp_path_factory.mktemp("raccoon") / "raccoon.zip"
    with zipfile.ZipFile(target, "w") as archive:
        for sub in ("images", "annotations"):
            for path in sorted((RACCOON / sub).iterdir()):
                archive.write(path, f"raccoon/{sub}/{path.name}")
    return target


def test_convert_raccoon_zip_makes_a_ready_dataset(service: Path, rows: Any, raccoon_zip: Path) -> None:
    dataset_id = rows.add_dataset(raccoon_zip, val_fraction=0.2)
    convert_dataset(dataset_id)
    dataset = rows.dataset(dataset_id)
    assert dataset.status == DatasetStatus.ready, dataset.error
    assert dataset.num_images == 196
    assert dataset.num_boxes == 213
    assert dataset.label_map == {"1": "raccoon"}
    assert dataset.progress == {"done": 196, "total": 196}
    report = dataset.report
    assert report["format"] == "voc"
    assert report["splits"]["val"]["images"] == 39
    assert report["stats"]
    assert report["anchors"]["aspect_ratios"]
    assert sum(p["code"] == "duplicate_image" for p in report["problems"]) == 4
    folder = service / "datasets" / dataset_id
    records = folder / "tfrecords"
    assert sorted(p.name for p in records.iterdir()) == [
        "dataset.json",
        "images.jsonl",
        "train-00000-of-00001.tfrecord",
        "val-00000-of-00001.tfrecord",
        "val_annotations.json",
    ]
    assert len(json.loads((records / "val_annotations.json").read_text())["images"]) == 39
    assert sorted(p.name for p in folder.iterdir()) == ["tfrecords", "upload.zip"], "the scratch copy is removed"

    convert_dataset(dataset_id)  # a redelivered message changes nothing
    assert rows.dataset(dataset_id).status == DatasetStatus.ready


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("members", "message"),
    [
        (None, "is not a readable zip file"),
        ({"../evil.txt": b"x"}, "path leaving its folder"),
        ({"notes/readme.txt": b"hello"}, "format"),
    ],
    ids=["not_a_zip", "zip_slip", "unknown_format"],
)
def test_convert_rejects_a_bad_upload_with_a_message(
    service: Path, rows: Any, tmp_path: Path, members: dict[str, bytes] | None, message: str
) -> None:
    upload = tmp_path / "upload.zip"
    if members is None:
        upload.write_bytes(b"this is not a zip")
    else:
        _zip(upload, members)
    dataset_id = rows.add_dataset(upload)
    convert_dataset(dataset_id)
    dataset = rows.dataset(dataset_id)
    assert dataset.status == DatasetStatus.failed
    assert message in (dataset.error or "")
    assert "Traceback" not in (dataset.error or "")
    assert "\n" not in (dataset.error or "")
    assert not (tmp_path.parent / "tfrecords").exists()
    assert sorted(p.name for p in (service / "datasets" / dataset_id).iterdir()) == ["upload.zip"]


def test_convert_of_a_dataset_no_longer_validating_does_nothing(service: Path, rows: Any, tmp_path: Path) -> None:
    dataset_id = rows.add_dataset(_zip(tmp_path / "x.zip", {"a.txt": b""}), status=DatasetStatus.failed.value)
    convert_dataset(dataset_id)
    assert rows.dataset(dataset_id).error is None
    convert_dataset("no-such-dataset")
