"""Synthetic plate scenes: exact boxes, determinism, and annotation files that parse."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from effdet.data.masks import coco_segmentation_mask
from effdet.data.records import Box
from effdet.data.synthetic import (
    CCPD_ADS,
    CCPD_ALPHABETS,
    CCPD_PROVINCES,
    SyntheticFormat,
    render_background,
    render_plates,
    render_scene,
    write_dataset,
)

WIDTH, HEIGHT = 320, 240
SEEDS = range(40)


def _read_tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _pixel_box(box: Box) -> tuple[int, int, int, int]:
    return int(box.xmin), int(box.ymin), int(box.xmax), int(box.ymax)


def test_boxes_are_the_exact_bounds_of_the_pixels_the_plates_changed() -> None:
    # The scene is the background of the same generator state with plates pasted on, so the pixels that differ
    # are the plate pixels: all must lie inside a box, and each box edge must touch one of them.
    for seed in SEEDS:
        image, boxes = render_scene(np.random.default_rng(seed), WIDTH, HEIGHT)
        background = render_background(np.random.default_rng(seed), WIDTH, HEIGHT)
        changed = np.any(np.asarray(image) != np.asarray(background), axis=2)
        inside = np.zeros_like(changed)
        for box in boxes:
            left, top, right, bottom = _pixel_box(box)
            assert (left, top, right, bottom) == (box.xmin, box.ymin, box.xmax, box.ymax)
            assert 0 <= left < right <= WIDTH
            assert 0 <= top < bottom <= HEIGHT
            assert not inside[top:bottom, left:right].any(), f"seed {seed}: plates overlap"
            inside[top:bottom, left:right] = True
            plate = changed[top:bottom, left:right]
            edges = (plate[0], plate[-1], plate[:, 0], plate[:, -1])
            assert all(edge.any() for edge in edges), f"seed {seed}: box {box} is not tight"
        assert not (changed & ~inside).any(), f"seed {seed}: changed pixels outside every box"


def test_scenes_vary_plate_count_and_scale() -> None:
    scenes = [render_scene(np.random.default_rng(seed), WIDTH, HEIGHT)[1] for seed in SEEDS]
    counts = {len(boxes) for boxes in scenes}
    assert counts == {1, 2, 3}
    assert all(box.label == "plate" for boxes in scenes for box in boxes)
    widths = [(box.xmax - box.xmin) / WIDTH for boxes in scenes for box in boxes]
    assert min(widths) < 0.25
    assert max(widths) > 0.45


@pytest.mark.parametrize("fmt", ["voc", "coco", "ccpd"])
def test_same_seed_writes_identical_files(tmp_path: Path, fmt: SyntheticFormat) -> None:
    first = _read_tree(write_dataset(tmp_path / "a", 6, fmt, seed=3))
    again = _read_tree(write_dataset(tmp_path / "b", 6, fmt, seed=3))
    other = _read_tree(write_dataset(tmp_path / "c", 6, fmt, seed=4))
    assert first == again
    assert first != other


def test_voc_annotations_parse_and_hold_the_rendered_boxes(tmp_path: Path) -> None:
    root = write_dataset(tmp_path, 5, "voc", seed=7)
    xml_files = sorted((root / "annotations").glob("*.xml"))
    assert len(xml_files) == 5
    for index, xml_file in enumerate(xml_files):
        annotation = ET.parse(xml_file).getroot()
        image_path = root / "images" / annotation.findtext("filename", "")
        assert Image.open(image_path).size == (
            int(annotation.findtext("size/width", "")),
            int(annotation.findtext("size/height", "")),
        )
        boxes = [
            (
                obj.findtext("name"),
                *(int(obj.findtext(f"bndbox/{tag}", "")) for tag in ("xmin", "ymin", "xmax", "ymax")),
            )
            for obj in annotation.iter("object")
        ]
        _, expected = render_scene(np.random.default_rng([7, index]), WIDTH, HEIGHT)
        assert boxes == [("plate", *_pixel_box(box)) for box in expected]


def test_coco_annotations_parse_with_one_plate_category(tmp_path: Path) -> None:
    root = write_dataset(tmp_path, 5, "coco", seed=1, image_size=(256, 192))
    document = json.loads((root / "annotations.json").read_text())
    assert document["categories"] == [{"id": 1, "name": "plate", "supercategory": "none"}]
    images = {image["id"]: image for image in document["images"]}
    assert len(images) == 5
    for image in images.values():
        assert Image.open(root / "images" / image["file_name"]).size == (image["width"], image["height"]) == (256, 192)
    assert {a["image_id"] for a in document["annotations"]} == set(images)
    for annotation in document["annotations"]:
        x, y, w, h = annotation["bbox"]
        assert (annotation["category_id"], annotation["iscrowd"]) == (1, 0)
        assert 0 <= x < x + w <= 256
        assert 0 <= y < y + h <= 192
        assert annotation["area"] == w * h


def test_masks_add_each_plates_polygon_and_leave_the_images_alone(tmp_path: Path) -> None:
    plain = _read_tree(write_dataset(tmp_path / "plain", 4, "coco", seed=2, image_size=(128, 96)))
    root = write_dataset(tmp_path / "masked", 4, "coco", seed=2, image_size=(128, 96), masks=True)
    masked = _read_tree(root)
    images = sorted(name for name in plain if name.startswith("images/"))
    assert [masked[name] for name in images] == [plain[name] for name in images]
    for annotation in json.loads((root / "annotations.json").read_text())["annotations"]:
        (polygon,) = annotation["segmentation"]
        assert len(polygon) == 8  # the plate's four corners
        pixels = np.argwhere(coco_segmentation_mask(annotation["segmentation"], 96, 128))
        (ymin, xmin), (ymax, xmax) = pixels.min(axis=0), pixels.max(axis=0) + 1
        x, y, w, h = annotation["bbox"]
        assert (xmin, ymin, xmax, ymax) == pytest.approx((x, y, x + w, y + h), abs=1.5)


def test_masks_are_written_for_coco_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="masks are written as COCO polygons; use format 'coco', not 'voc'"):
        write_dataset(tmp_path, 1, "voc", masks=True)


def test_ccpd_names_carry_one_plate_box_corners_and_number(tmp_path: Path) -> None:
    root = write_dataset(tmp_path, 6, "ccpd", seed=2)
    names = sorted(p.name for p in (root / "images").iterdir())
    assert len(names) == 6
    boxes = []
    for name in names:
        area, tilt, box, corners, number, brightness, blur = name.removesuffix(".jpg").split("-")
        left, top, right, bottom = (int(v) for point in box.split("_") for v in point.split("&"))
        assert 0 <= left < right <= WIDTH
        assert 0 <= top < bottom <= HEIGHT
        assert int(area) == round(1000 * (right - left) * (bottom - top) / (WIDTH * HEIGHT))
        points = [tuple(int(v) for v in point.split("&")) for point in corners.split("_")]
        assert len(points) == 4
        assert all(left <= x <= right and top <= y <= bottom for x, y in points)
        bottom_right, _, top_left, _ = points
        assert bottom_right[0] > top_left[0]
        assert bottom_right[1] > top_left[1]
        indices = [int(i) for i in number.split("_")]
        assert len(indices) == 7
        assert indices[0] < len(CCPD_PROVINCES)
        assert indices[1] < len(CCPD_ALPHABETS)
        assert all(i < len(CCPD_ADS) for i in indices[2:])
        assert all(v.isdigit() for v in (*tilt.split("_"), brightness, blur))
        boxes.append((left, top, right, bottom))
    expected = []
    for index in range(6):
        _, plates = render_plates(np.random.default_rng([2, index]), WIDTH, HEIGHT, max_plates=1)
        assert len(plates) == 1
        expected.append(_pixel_box(plates[0].box))
    assert sorted(boxes) == sorted(expected)


def test_write_dataset_reports_progress_per_image(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    write_dataset(tmp_path, 3, "voc", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_write_dataset_rejects_an_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown synthetic format 'yolo'; choose one of voc, coco, ccpd"):
        write_dataset(tmp_path, 1, "yolo")  # type: ignore[arg-type]
