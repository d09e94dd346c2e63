"""Uploaded google/automl TFRecords: read example by example, validated, relabelled and rewritten like any format."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from typer.testing import CliRunner

from effdet.cli import app
from effdet.data.convert import convert_dataset
from effdet.data.image_index import read_index
from effdet.data.ingest import detect_format, read_dataset
from effdet.data.layout import IMAGE_INDEX_FILE
from effdet.data.records import Box
from effdet.data.shards import make_example, parse_example
from effdet.data.validate import ValidItem

LABEL_IDS = {"plate": 1, "car": 3}


def example(folder: Path, name: str, boxes: list[Box], size: tuple[int, int] = (120, 80)) -> tf.train.Example:
    """An automl Example written by our own writer: a size[0] x size[1] PNG with the boxes drawn in."""
    pixels = np.full((size[1], size[0], 3), 60, np.uint8)
    for box in boxes:
        pixels[int(box.ymin) : int(box.ymax), int(box.xmin) : int(box.xmax)] = (200, 40, 40)
    path = folder / name
    Image.fromarray(pixels).save(path)
    item = ValidItem(
        image_path=path, filename=name, width=size[0], height=size[1], boxes=boxes, sha1=name, image_format="png"
    )
    return make_example(item, path.read_bytes(), 0, LABEL_IDS)


def write(path: Path, examples: list[tf.train.Example]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for ex in examples:
            writer.write(ex.SerializeToString())


def good(folder: Path, index: int) -> tf.train.Example:
    boxes = [Box(xmin=10 + index, ymin=10, xmax=50 + index, ymax=40, label="plate")]
    if index % 2:
        boxes.append(Box(xmin=70, ymin=30, xmax=110, ymax=70, label="car"))
    return example(folder, f"img{index}.png", boxes)


@pytest.fixture
def automl_records(tmp_path: Path) -> Path:
    """A folder with train/val shards of 8 good examples (ids 1 and 3, as automl's create_*_tfrecord writes)."""
    images, root = tmp_path / "images", tmp_path / "upload"
    images.mkdir()
    write(root / "train-00000-of-00001.tfrecord", [good(images, i) for i in range(6)])
    write(root / "val-00000-of-00001.tfrecord", [good(images, i) for i in range(6, 8)])
    return root


def test_convert_tfrecords_keeps_ids_and_splits_and_writes_the_usual_outputs(
    automl_records: Path, tmp_path: Path
) -> None:
    assert detect_format(automl_records) == "tfrecord"
    report = convert_dataset(automl_records, tmp_path / "out", workers=1)
    out = tmp_path / "out"
    assert report.format == "tfrecord"
    assert report.label_map == {1: "plate", 3: "car"}
    assert (report.splits["train"].images, report.splits["val"].images) == (6, 2)
    assert report.problems == []
    assert report.stats.num_boxes == 12
    assert report.anchors is not None
    assert report.max_instances_per_image == 2
    truth = json.loads((out / "val_annotations.json").read_text())
    assert truth["categories"] == [{"id": 1, "name": "plate"}, {"id": 3, "name": "car"}]
    val = [parse_example(r) for r in tf.data.TFRecordDataset(str(out / report.splits["val"].shards[0]))]
    assert {int(v["source_id"].numpy()) for v in val} == {image["id"] for image in truth["images"]}
    assert sorted(v["classes"].numpy().tolist() for v in val) == [[1], [1, 3]]
    np.testing.assert_allclose(
        sorted(v["boxes"].numpy()[0].tolist() for v in val)[0], [10 / 80, 16 / 120, 40 / 80, 56 / 120], atol=1e-6
    )
    assert json.loads((out / "dataset.json").read_text())["label_map"] == {"1": "plate", "3": "car"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # scratch images removed
    index = list(read_index(out / IMAGE_INDEX_FILE))
    assert sorted(entry.split for entry in index) == ["train"] * 6 + ["val"] * 2
    assert not any(entry.in_upload for entry in index), "images taken out of records are no file of the upload"


def test_bad_examples_are_reported_and_the_rest_converted(tmp_path: Path) -> None:
    images, root = tmp_path / "images", tmp_path / "upload"
    images.mkdir()
    wrong_size = good(images, 0)
    wrong_size.features.feature["image/width"].int64_list.value[:] = [999]
    out_of_range = good(images, 1)
    out_of_range.features.feature["image/object/bbox/xmax"].float_list.value[0] = 45.0  # pixels, not normalised
    undecodable = good(images, 2)
    undecodable.features.feature["image/encoded"].bytes_list.value[:] = [b"not an image"]
    background_id = good(images, 3)
    background_id.features.feature["image/object/class/label"].int64_list.value[0] = 0
    contradicting = good(images, 5)
    contradicting.features.feature["image/object/class/text"].bytes_list.value[1] = b"plate"
    examples = [wrong_size, out_of_range, undecodable, background_id, contradicting, good(images, 4), good(images, 6)]
    write(root / "data.tfrecord", examples)
    (root / "later-broken.tfrecord").write_bytes((root / "data.tfrecord").read_bytes()[:-30])

    report = convert_dataset(root, tmp_path / "out", val_fraction=0.25, workers=1)
    found = {(p.file, p.code, p.severity.value, p.object_index) for p in report.problems}
    assert ("img0.png", "size_mismatch", "warning", None) in found
    assert ("img1.png", "box_not_normalised", "error", 0) in found
    assert ("img2.png", "unsupported_image", "error", None) in found
    assert ("img3.png", "bad_class_id", "error", 0) in found
    assert ("img5.png", "inconsistent_class", "error", 1) in found
    assert ("later-broken.tfrecord", "corrupt_tfrecord", "error", None) in found
    assert "img2.png" in report.dropped_images
    assert report.label_map == {1: "plate", 3: "car"}
    kept = report.splits["train"].images + report.splits["val"].images
    assert kept == 6  # 7 in data.tfrecord, less the undecodable
    copies = [p.file for p in report.problems if p.code == "duplicate_image"]
    assert copies == [f"later-broken.tfrecord#{i}" for i in (0, 1, 3, 4, 5)]  # the truncated file's 6 first


def test_text_less_records_take_names_from_a_user_label_map(tmp_path: Path) -> None:
    images, root = tmp_path / "images", tmp_path / "upload"
    images.mkdir()
    examples = [good(images, i) for i in range(4)]
    for ex in examples:
        del ex.features.feature["image/object/class/text"]
    write(root / "records.tfrec", examples)
    unnamed = read_dataset(root, "tfrecord", tmp_path / "scratch")
    assert unnamed.label_ids == {1: "1", 3: "3"}
    report = convert_dataset(root, tmp_path / "out", label_map={1: "plate", 3: "car"}, workers=1)
    assert report.label_map == {1: "plate", 3: "car"}
    assert report.problems == []
    assert report.stats.num_boxes == 6


def test_read_dataset_needs_a_scratch_folder_for_tfrecords(automl_records: Path) -> None:
    with pytest.raises(ValueError, match="scratch folder"):
        read_dataset(automl_records)


def test_cli_converts_a_tfrecord_folder_and_zip(automl_records: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["convert", str(automl_records), "--output", str(tmp_path / "records")])
    assert result.exit_code == 0, result.output
    assert "train: 6 images" in result.output
    assert "val: 2 images" in result.output
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in automl_records.iterdir():
            zf.write(path, Path("upload") / path.name)
    result = runner.invoke(app, ["convert", str(archive), "--output", str(tmp_path / "zipped"), "--format", "tfrecord"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "zipped" / "dataset.json").read_text())["format"] == "tfrecord"
