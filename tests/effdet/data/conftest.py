"""Fixtures for the dataset readers: the shared raccoon dataset, copies of it written in every other format, and a
tiny Pascal VOC2012 segmentation set."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import yaml
from PIL import Image

from effdet.data.formats.voc import read_voc
from effdet.data.masks import voc_colormap
from effdet.data.read_result import ReadResult
from effdet.data.records import Record

RACCOON = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "raccoon"


class Crafted(NamedTuple):
    """A dataset written for a test: its root, and each image's name -> the raccoon image it shows."""

    root: Path
    original: dict[str, str]


MakeDataset = Callable[[str, Path], Crafted]


@pytest.fixture(scope="session")
def raccoon_root() -> Path:
    """The shared raccoon dataset (200 images, 217 VOC boxes); a missing copy fails, it is not skipped."""
    if not (RACCOON / "annotations").is_dir() or not (RACCOON / "images").is_dir():
        pytest.fail(f"the shared raccoon dataset is missing at {RACCOON}; tests need shared/ beside the repo")
    return RACCOON


@pytest.fixture(scope="session")
def voc_raccoon(raccoon_root: Path) -> ReadResult:
    """The raccoon dataset as the VOC reader reads it: the reference every other format is compared with."""
    return read_voc(raccoon_root)


@pytest.fixture
def make_dataset(voc_raccoon: ReadResult) -> MakeDataset:
    """A function that writes the raccoon dataset in one format ('coco', 'yolo', ...) under a folder."""

    def make(kind: str, dest: Path) -> Crafted:
        return _BUILDERS[kind](sorted(voc_raccoon.records, key=lambda r: r.filename), dest)

    return make


def _link_images(records: list[Record], folder: Path) -> dict[str, str]:
    """Symlink each record's image into folder under its own name."""
    folder.mkdir(parents=True, exist_ok=True)
    for record in records:
        (folder / record.image_path.name).symlink_to(record.image_path)
    return {record.image_path.name: record.image_path.name for record in records}


def _size(record: Record) -> tuple[int, int]:
    """The declared size (the raccoon README checks it matches the pixels)."""
    assert record.width is not None
    assert record.height is not None
    return record.width, record.height


def _coco(records: list[Record], root: Path) -> Crafted:
    """annotations/instances_{train,val}.json (sparse category ids) and images/."""
    original = _link_images(records, root / "images")
    (root / "annotations").mkdir()
    categories = [{"id": 3, "name": "dog"}, {"id": 7, "name": "raccoon"}]
    for split, part in (("train", records[:160]), ("val", records[160:])):
        images, annotations = [], []
        for image_id, record in enumerate(part, start=100):
            width, height = _size(record)
            images.append({"id": image_id, "file_name": record.image_path.name, "width": width, "height": height})
            for box in record.boxes:
                bbox = [box.xmin, box.ymin, box.xmax - box.xmin, box.ymax - box.ymin]
                annotations.append(
                    {"id": len(annotations) + 1, "image_id": image_id, "category_id": 7, "bbox": bbox, "iscrowd": 0}
                )
        data = {"images": images, "annotations": annotations, "categories": categories}
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    return Crafted(root, original)


def _yolo(records: list[Record], root: Path) -> Crafted:
    """images/ mirrored by labels/, class names in data.yaml as a dict."""
    original = _link_images(records, root / "images")
    (root / "labels").mkdir()
    (root / "data.yaml").write_text(yaml.safe_dump({"path": ".", "train": "images", "names": {0: "raccoon"}}))
    for record in records:
        width, height = _size(record)
        lines = [
            f"0 {(b.xmin + b.xmax) / 2 / width:.6f} {(b.ymin + b.ymax) / 2 / height:.6f} "
            f"{(b.xmax - b.xmin) / width:.6f} {(b.ymax - b.ymin) / height:.6f}"
            for b in record.boxes
        ]
        (root / "labels" / f"{record.image_path.stem}.txt").write_text("\n".join(lines) + "\n")
    return Crafted(root, original)


def _csv_header(records: list[Record], root: Path) -> Crafted:
    """One header CSV with shuffled columns and 'label' for the class, images/ beside it."""
    original = _link_images(records, root / "images")
    rows = ["label,ymax,filename,xmin,height,xmax,ymin,width"]
    for record in records:
        width, height = _size(record)
        name = record.image_path.name
        rows += [f"{b.label},{b.ymax},{name},{b.xmin},{height},{b.xmax},{b.ymin},{width}" for b in record.boxes]
    (root / "boxes.csv").write_text("\n".join(rows) + "\n")
    return Crafted(root, original)


def _csv_model_maker(records: list[Record], root: Path) -> Crafted:
    """TFLite Model Maker CSV: no header, gs:// paths, normalised corners, TRAIN/VALIDATION/TEST."""
    original = _link_images(records, root / "images")
    rows = []
    for position, record in enumerate(records):
        width, height = _size(record)
        split = "TRAIN" if position < 150 else "VALIDATION" if position < 180 else "TEST"
        path = f"gs://bucket/raccoon/{record.image_path.name}"
        rows += [
            f"{split},{path},{b.label},{b.xmin / width:.6f},{b.ymin / height:.6f},,,"
            f"{b.xmax / width:.6f},{b.ymax / height:.6f},,"
            for b in record.boxes
        ]
    (root / "annotations.csv").write_text("\n".join(rows) + "\n")
    return Crafted(root, original)


def _ccpd(records: list[Record], root: Path) -> Crafted:
    """The one-box images renamed to CCPD names (CCPD has one plate per image)."""
    root.mkdir(parents=True, exist_ok=True)
    original = {}
    for position, record in enumerate(r for r in records if len(r.boxes) == 1):
        b = record.boxes[0]
        x1, y1, x2, y2 = int(b.xmin), int(b.ymin), int(b.xmax), int(b.ymax)
        name = (
            f"{position:03d}-90_90-{x1}&{y1}_{x2}&{y2}-{x2}&{y2}_{x1}&{y2}_{x1}&{y1}_{x2}&{y1}-0_0_1_2_3_4_5-80-9.jpg"
        )
        (root / name).symlink_to(record.image_path)
        original[name] = record.image_path.name
    return Crafted(root, original)


def _voc2012(records: list[Record], root: Path) -> Crafted:
    """The VOC2012 layout: Annotations/ and JPEGImages/."""
    original = _link_images(records, root / "JPEGImages")
    (root / "Annotations").mkdir()
    for record in records:
        shutil.copy(RACCOON / record.annotation_file, root / "Annotations")
    return Crafted(root, original)


_BUILDERS: dict[str, Callable[[list[Record], Path], Crafted]] = {
    "coco": _coco,
    "yolo": _yolo,
    "csv_header": _csv_header,
    "csv_model_maker": _csv_model_maker,
    "ccpd": _ccpd,
    "voc2012": _voc2012,
}


@pytest.fixture
def voc_segmentation(tmp_path: Path) -> Path:
    """VOCdevkit/VOC2012 with three 48x32 images: a.jpg (a cat, 8 in VOC's palette, at x 4..20, y 6..18) and b.jpg (a
    dog, 12, at x 24..40, y 8..24) have SegmentationClass PNGs with a void (255) row 0; c.jpg (a cat) has none."""
    root = tmp_path / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    objects = {"a": ("cat", 8, (4, 6, 20, 18)), "b": ("dog", 12, (24, 8, 40, 24)), "c": ("cat", 8, (2, 2, 12, 12))}
    width, height = 48, 32
    for grey, (stem, (label, index, (xmin, ymin, xmax, ymax))) in enumerate(objects.items()):
        Image.new("RGB", (width, height), (90 + 40 * grey,) * 3).save(root / "JPEGImages" / f"{stem}.jpg")
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><size><width>{width}</width><height>{height}</height>"
            f"</size><segmented>1</segmented><object><name>{label}</name><bndbox><xmin>{xmin}</xmin>"
            f"<ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object></annotation>"
        )
        if stem == "c":
            continue
        indices = np.zeros((height, width), np.uint8)
        indices[ymin:ymax, xmin:xmax] = index
        indices[0] = 255
        mask = Image.fromarray(indices, mode="P")
        mask.putpalette(voc_colormap().ravel().tolist())
        mask.save(root / "SegmentationClass" / f"{stem}.png")
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("a\nb\n")
    return tmp_path / "VOCdevkit"


PLATE_COLOUR = (250, 50, 83)
"""The colour CVAT's labelmap.txt gives class 'plate' in the `cvat_segmentation` fixture."""


@pytest.fixture
def cvat_segmentation(tmp_path: Path) -> Path:
    """A CVAT "Segmentation mask 1.1" export of a class of our own: labelmap.txt (`background:0,0,0::`,
    `plate:250,50,83::`) and three 48x32 images, each with a plate at x 8..24, y 4..20, whose SegmentationClass PNGs
    are RGB (a), palette with the plate colour at index 3 (b) and greyscale in labelmap line order (c)."""
    root = tmp_path / "export"
    for folder in ("JPEGImages", "Annotations", "SegmentationClass", "SegmentationObject", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    (root / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\nplate:250,50,83::\n")
    width, height = 48, 32
    plate = np.zeros((height, width), bool)
    plate[4:20, 8:24] = True
    for grey, stem in enumerate("abc"):
        Image.new("RGB", (width, height), (90 + 40 * grey,) * 3).save(root / "JPEGImages" / f"{stem}.jpg")
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><size><width>{width}</width><height>{height}</height>"
            "</size><object><name>plate</name><bndbox><xmin>8</xmin><ymin>4</ymin><xmax>24</xmax><ymax>20</ymax>"
            "</bndbox></object></annotation>"
        )
        Image.fromarray(plate.astype(np.uint8)).save(root / "SegmentationObject" / f"{stem}.png")
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[plate] = PLATE_COLOUR
    Image.fromarray(rgb, mode="RGB").save(root / "SegmentationClass" / "a.png")
    palette = Image.fromarray((plate * 3).astype(np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 9, 9, 9, 200, 200, 200, *PLATE_COLOUR])
    palette.save(root / "SegmentationClass" / "b.png")
    Image.fromarray(plate.astype(np.uint8), mode="L").save(root / "SegmentationClass" / "c.png")
    (root / "ImageSets" / "Segmentation" / "default.txt").write_text("a\nb\nc\n")
    return root
