"""Readers carry each record's mask source: COCO `segmentation` on its boxes, VOC2012's SegmentationClass PNGs."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from PIL import Image

from effdet.data.formats.coco import read_coco
from effdet.data.formats.voc import read_voc
from effdet.data.ingest import DatasetFormat, detect_format, extract_zip
from effdet.data.records import CocoRle


def _coco(root: Path, annotations: list[dict[str, object]]) -> Path:
    root.mkdir()
    Image.new("RGB", (40, 30)).save(root / "a.jpg")
    document = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}],
        "annotations": [{"id": i, "image_id": 1, "category_id": 1, **a} for i, a in enumerate(annotations, 1)],
        "categories": [{"id": 1, "name": "cat"}],
    }
    (root / "instances.json").write_text(json.dumps(document))
    return root


def test_coco_segmentation_polygons_and_rle_travel_on_their_boxes(tmp_path: Path) -> None:
    polygon = [[1, 1, 9, 1, 9, 9, 1, 9]]
    annotations = [
        {"bbox": [1, 1, 8, 8], "segmentation": polygon},
        {"bbox": [20, 10, 5, 5], "segmentation": {"counts": [600, 600], "size": [30, 40]}, "iscrowd": 1},
        {"bbox": [2, 2, 4, 4], "segmentation": {"counts": "PPYo0", "size": [30, 40]}},
        {"bbox": [3, 3, 4, 4]},
        {"bbox": [3, 3, 4, 4], "segmentation": []},
    ]
    result = read_coco(_coco(tmp_path / "coco", annotations))
    (record,) = result.records
    assert result.problems == []
    segmentations = [box.segmentation for box in record.boxes]
    assert segmentations == [
        [[1.0, 1.0, 9.0, 1.0, 9.0, 9.0, 1.0, 9.0]],
        CocoRle(counts=[600, 600], size=[30, 40]),
        CocoRle(counts="PPYo0", size=[30, 40]),
        None,
        None,
    ]
    assert record.has_masks
    assert result.records.with_masks == 1


def test_coco_segmentation_of_another_shape_is_a_problem_and_the_box_kept(tmp_path: Path) -> None:
    result = read_coco(_coco(tmp_path / "coco", [{"bbox": [1, 1, 8, 8], "segmentation": "polygon please"}]))
    (record,) = result.records
    assert [problem.code for problem in result.problems] == ["invalid_segmentation"]
    assert result.problems[0].object_index == 0
    assert record.boxes[0].segmentation is None


def test_boxes_only_coco_has_no_masks(tmp_path: Path) -> None:
    result = read_coco(_coco(tmp_path / "coco", [{"bbox": [1, 1, 8, 8]}]))
    assert not result.records[0].has_masks
    assert result.records.with_masks == 0


def test_voc2012_records_find_their_segmentation_class_pngs(voc_segmentation: Path) -> None:
    result = read_voc(voc_segmentation)
    found = {record.filename: record.class_png for record in result.records}
    root = voc_segmentation / "VOC2012"
    assert found == {
        "VOC2012/JPEGImages/a.jpg": root / "SegmentationClass" / "a.png",
        "VOC2012/JPEGImages/b.jpg": root / "SegmentationClass" / "b.png",
        "VOC2012/JPEGImages/c.jpg": None,
    }
    assert result.problems == []  # the PNGs are masks, not unannotated images
    assert result.records.with_masks == 2


def test_a_voc_zip_with_segmentation_folders_is_still_voc(voc_segmentation: Path, tmp_path: Path) -> None:
    archive = tmp_path / "voc.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(voc_segmentation.rglob("*")):
            zf.write(path, path.relative_to(voc_segmentation.parent))
    assert detect_format(extract_zip(archive, tmp_path / "unpacked")) is DatasetFormat.VOC
