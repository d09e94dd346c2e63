"""Readers carry each record's mask source: COCO `segmentation` on its boxes, VOC2012's SegmentationClass PNGs (and
the class colours of a CVAT / Datumaro labelmap.txt beside them)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

from PIL import Image

from effdet.data.formats.coco import read_coco
from effdet.data.formats.labelmap import read_labelmap
from effdet.data.formats.voc import read_voc
from effdet.data.ingest import DatasetFormat, detect_format, extract_zip
from effdet.data.masks import ClassColours
from effdet.data.records import CocoRle, Problem


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


def test_cvat_labelmap_beside_segmentation_class_gives_its_colours(cvat_segmentation: Path) -> None:
    result = read_voc(cvat_segmentation)
    assert result.problems == []
    assert result.class_colours == {
        cvat_segmentation / "SegmentationClass": ClassColours((("background", (0, 0, 0)), ("plate", (250, 50, 83))))
    }


def test_labelmap_at_the_root_serves_a_nested_voc_folder(cvat_segmentation: Path, tmp_path: Path) -> None:
    (cvat_segmentation / "labelmap.txt").rename(tmp_path / "labelmap.txt")
    result = read_voc(tmp_path)
    assert list(result.class_colours) == [cvat_segmentation / "SegmentationClass"]


def test_malformed_labelmap_lines_are_problems_with_their_line_numbers(cvat_segmentation: Path) -> None:
    (cvat_segmentation / "labelmap.txt").write_text(
        "# label:color_rgb:parts:actions\n"
        "background:0,0,0::\n"
        "plate:250,50,83::\n"
        "cup:250,50,300::\n"
        ":1,2,3::\n"
        "plate:4,5,6::\n"
        "lid:250,50,83::\n"
        "rim:7,8,9::\n"
    )
    result = read_voc(cvat_segmentation)
    assert [(p.file, p.code, p.message.split(" ", 2)[1]) for p in result.problems] == [
        ("labelmap.txt", "invalid_labelmap", number) for number in ("4", "5", "6", "7")
    ]
    assert "colour '250,50,300', not three numbers 0..255" in result.problems[0].message
    assert "plate:250,50,83::" in result.problems[1].message  # how a line is written
    assert "again (first on line 3)" in result.problems[2].message
    assert "which line 3 already gives another class" in result.problems[3].message
    [colours] = result.class_colours.values()
    assert colours.classes == (("background", (0, 0, 0)), ("plate", (250, 50, 83)), ("rim", (7, 8, 9)))


def test_labelmap_without_colours_paints_its_classes_in_voc_colours(tmp_path: Path) -> None:
    path = tmp_path / "labelmap.txt"
    path.write_text("background\nplate\ncup:::\n")
    problems: list[Problem] = []
    colours = read_labelmap(path, "labelmap.txt", problems)
    assert problems == []
    assert colours.classes == (("background", (0, 0, 0)), ("plate", (128, 0, 0)), ("cup", (0, 128, 0)))


def test_labelmap_of_a_dataset_without_class_pngs_is_not_read(cvat_segmentation: Path) -> None:
    shutil.rmtree(cvat_segmentation / "SegmentationClass")
    (cvat_segmentation / "labelmap.txt").write_text("not a labelmap: at all\n")
    result = read_voc(cvat_segmentation)
    assert result.problems == []
    assert result.class_colours == {}
