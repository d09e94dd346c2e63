"""Conversion with masks end to end: class maps in the records beside the boxes, and the report's summary."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from effdet.data.convert import ConversionReport, convert_dataset
from effdet.data.defaults import dataset_hparams
from effdet.data.masks import IGNORE, coco_segmentation_mask, decode_png, paint_class_map
from effdet.data.shards import parse_example
from effdet.data.synthetic import write_dataset
from effdet.workflow import resolve_config


@pytest.fixture(scope="module")
def plates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ConversionReport]:
    """Six synthetic plate scenes with COCO polygons, converted: (dataset, records, report)."""
    folder = tmp_path_factory.mktemp("plates")
    source = write_dataset(folder / "source", 6, "coco", seed=3, image_size=(96, 64), masks=True)
    report = convert_dataset(source, folder / "records", val_fraction=0.34, workers=1)
    return source, folder / "records", report


def _class_maps(records: Path) -> dict[str, np.ndarray | None]:
    """File name -> the class map each record holds (parsed as training parses it), None when it has none."""
    maps: dict[str, np.ndarray | None] = {}
    for serialized in tf.data.TFRecordDataset(sorted(str(p) for p in records.glob("*.tfrecord"))):
        name = tf.train.Example.FromString(serialized.numpy()).features.feature["image/filename"].bytes_list.value[0]
        png = parse_example(serialized)["seg_mask"].numpy()
        maps[name.decode()] = decode_png(png) if png else None
    return maps


def _expected(source: Path) -> dict[str, np.ndarray]:
    """File name -> the class map the annotations' polygons paint (plate = label id 1)."""
    document = json.loads((source / "annotations.json").read_text())
    expected = {}
    for image in document["images"]:
        height, width = image["height"], image["width"]
        plates = [a for a in document["annotations"] if a["image_id"] == image["id"]]
        masks = [(coco_segmentation_mask(a["segmentation"], height, width), 1, False) for a in plates]
        expected[f"images/{image['file_name']}"] = paint_class_map(masks, height, width)
    return expected


def test_records_hold_each_image_class_map(plates: tuple[Path, Path, ConversionReport]) -> None:
    source, records, report = plates
    maps = _class_maps(records)
    expected = _expected(source)
    assert maps.keys() == expected.keys()
    for name, class_map in maps.items():
        assert class_map is not None
        np.testing.assert_array_equal(class_map, expected[name], err_msg=name)
    assert report.problems == []


def test_report_sums_up_the_masks_and_implies_seg_num_classes(plates: tuple[Path, Path, ConversionReport]) -> None:
    _, records, report = plates
    summary = report.segmentation
    assert summary is not None
    assert summary.images == {split: report.splits[split].images for split in ("train", "val")}
    assert sum(summary.images.values()) == 6
    assert list(summary.class_shares) == ["background", "plate"]
    assert 0.7 < summary.class_shares["background"] < 1.0
    assert sum(summary.class_shares.values()) == pytest.approx(1.0, abs=1e-5)
    assert summary.ignore_share == 0.0
    assert ConversionReport.model_validate_json((records / "dataset.json").read_text()) == report
    assert dataset_hparams(report, {})["seg_num_classes"] == 2
    assert "seg_num_classes" not in dataset_hparams(report, {"seg_num_classes": 5})
    for heads in (["object_detection", "segmentation"], ["segmentation"]):
        config = resolve_config("efficientdet-d0", report, {"heads": heads})
        assert (config.model.heads, config.model.seg_num_classes) == (heads, 2)


def test_voc_segmentation_class_pngs_are_written_and_unmasked_images_kept(
    voc_segmentation: Path, tmp_path: Path
) -> None:
    report = convert_dataset(voc_segmentation, tmp_path / "records", val_fraction=0.0, workers=1)
    assert report.label_map == {1: "cat", 2: "dog"}
    assert [(p.file, p.code) for p in report.problems] == [("VOC2012/JPEGImages/c.jpg", "mask_missing")]
    assert report.segmentation is not None
    assert report.segmentation.images == {"train": 2, "val": 0}
    assert report.splits["train"].images == 3
    maps = _class_maps(tmp_path / "records")
    cat, dog, unmasked = (maps[f"VOC2012/JPEGImages/{stem}.jpg"] for stem in "abc")
    assert unmasked is None
    assert cat is not None
    assert dog is not None
    assert cat.shape == (32, 48)  # the images' own size
    assert (cat[6:18, 4:20] == 1).all()
    assert (cat[0] == IGNORE).all()
    assert (dog[8:24, 24:40] == 2).all()


def test_a_report_written_before_masks_parses_without_a_summary(plates: tuple[Path, Path, ConversionReport]) -> None:
    _, _, report = plates
    older = report.model_dump(mode="json", exclude={"segmentation"})
    assert ConversionReport.model_validate(older).segmentation is None


def _zip(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(folder.parent))
    return archive


def test_cvat_labelmap_colours_name_our_classes_in_rgb_palette_and_greyscale_pngs(
    cvat_segmentation: Path, tmp_path: Path
) -> None:
    upload = _zip(cvat_segmentation, tmp_path / "cvat.zip")
    report = convert_dataset(upload, tmp_path / "records", val_fraction=0.0, workers=1)
    assert report.format == "voc"
    assert report.label_map == {1: "plate"}
    assert report.problems == []
    assert report.segmentation is not None
    assert report.segmentation.images == {"train": 3, "val": 0}
    expected = np.zeros((32, 48), np.uint8)
    expected[4:20, 8:24] = 1
    maps = _class_maps(tmp_path / "records")
    assert maps.keys() == {f"JPEGImages/{stem}.jpg" for stem in "abc"}
    for name, class_map in maps.items():
        assert class_map is not None, name
        np.testing.assert_array_equal(class_map, expected, err_msg=name)


def test_colour_that_labelmap_does_not_list_is_an_unknown_class(cvat_segmentation: Path, tmp_path: Path) -> None:
    mask = cvat_segmentation / "SegmentationClass" / "a.png"
    rgb = np.array(Image.open(mask))
    rgb[25:30, 30:40] = (1, 2, 3)
    Image.fromarray(rgb).save(mask)
    report = convert_dataset(cvat_segmentation, tmp_path / "records", val_fraction=0.0, workers=1)
    [problem] = report.problems
    assert (problem.file, problem.code) == ("JPEGImages/a.jpg", "mask_unknown_class")
    assert "#010203 (1,2,3), which labelmap.txt does not list" in problem.message
    maps = _class_maps(tmp_path / "records")
    assert maps["JPEGImages/a.jpg"] is None  # kept for detection, without a mask
    assert maps["JPEGImages/b.jpg"] is not None
