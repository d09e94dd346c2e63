"""An image's per-pixel class map from its record's mask source, checked like its boxes, and what a dataset's maps
hold (the report's `segmentation` summary).

The map is uint8 [height, width] of the upright image as stored in the records: 0 background, k the label id of
the records' class labels (effdet.data.labels), 255 ignore (effdet.data.masks). It is drawn on the pixels the
annotation was drawn on, which validation decides as it does for the boxes, then turned upright by the same EXIF
orientation. A mask problem never drops the image: a broken mask is left out (the image keeps its boxes, and the
segmentation loss skips its pixels), and an object whose pixels are unknown (no segmentation, a bad one, a class
the label map lacks) has its box ignored in the map rather than taught as background.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

from effdet.data.labels import LabelMap
from effdet.data.masks import (
    BACKGROUND,
    BACKGROUND_NAME,
    IGNORE,
    ClassColours,
    MaskError,
    UnknownMaskClassError,
    check_mask_size,
    coco_segmentation_mask,
    encode_png,
    paint_class_map,
    read_voc_class_png,
)
from effdet.data.records import Box, CocoRle, Problem, Record, error, warning

_EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""EXIF orientation -> the transpose that turns it upright (as PIL's ImageOps.exif_transpose re-encodes images)."""


class Frame(NamedTuple):
    """The pixels an annotation was drawn on (width x height) and the EXIF orientation that turns them upright (1
    when they already are)."""

    width: int
    height: int
    orientation: int


class ClassMap(NamedTuple):
    """An image's class map as stored (greyscale PNG) and its pixels per class id (ids with none left out)."""

    png: bytes
    pixels: dict[int, int]


class SegmentationSummary(BaseModel):
    """What a dataset's per-pixel class maps hold."""

    images: dict[str, int] = Field(description="images with a class map, per split")
    class_shares: dict[str, float] = Field(
        description="each class's share of the labelled (not ignored) pixels, by name, 'background' first"
    )
    ignore_share: float = Field(description="share of all class-map pixels that are ignored (crowds, borders)")


@dataclass(frozen=True)
class MaskClasses:
    """What reading a dataset's masks needs: class name (or alias) -> label id, and the class colours a labelmap.txt
    gives the VOC class PNGs of a SegmentationClass folder (by folder; a folder without one uses VOC's palette)."""

    label_ids: Mapping[str, int]
    colours: Mapping[Path, ClassColours] = field(default_factory=dict)


def mask_label_ids(label_map: LabelMap) -> dict[str, int]:
    """Class name or alias -> label id, for reading class PNGs whose palette names classes; ValueError when an id
    does not fit a uint8 class map."""
    too_large = max(label_map.names, default=0)
    if too_large >= IGNORE:
        raise ValueError(
            f"class maps store label ids 1..{IGNORE - 1}, but the label map goes up to {too_large}; number the "
            "classes from 1 without gaps, or convert the dataset without its masks"
        )
    ids = {name: class_id for class_id, name in label_map.names.items()}
    aliases = {alias: ids[target] for alias, target in label_map.aliases.items() if target in ids}
    return {**aliases, **ids}


def record_class_map(record: Record, frame: Frame, masks: MaskClasses, problems: list[Problem]) -> ClassMap | None:
    """The record's class map on the upright image, or None (with the problem that says why) when it has no usable
    mask: none at all (`mask_missing`), unreadable, of another size or naming an unknown class, or all background
    while the annotation has objects (`mask_empty`)."""
    if not record.has_masks:
        message = (
            "other images of the dataset have masks but this one has none; it is kept for detection and left out "
            "of the segmentation loss: add its SegmentationClass PNG or its objects' segmentation"
        )
        problems.append(warning(record.filename, "mask_missing", message))
        return None
    if record.class_png is not None:
        drawn = _read_class_png(record.class_png, record.filename, frame, masks)
    else:
        drawn = _paint_objects(record, frame, masks.label_ids, problems)
    if isinstance(drawn, Problem):
        problems.append(drawn)
        return None
    class_map = _upright(drawn, frame.orientation)
    objects = sum(not box.is_crowd for box in record.boxes)
    if objects and not ((class_map != BACKGROUND) & (class_map != IGNORE)).any():
        message = (
            f"the mask is all background but the annotation has {objects} objects; the image is kept without a "
            "mask: paint its objects' pixels"
        )
        problems.append(warning(record.filename, "mask_empty", message))
        return None
    counts = np.bincount(class_map.ravel(), minlength=IGNORE + 1)
    return ClassMap(encode_png(class_map), {int(i): int(counts[i]) for i in np.flatnonzero(counts)})


def _read_class_png(path: Path, file: str, frame: Frame, masks: MaskClasses) -> np.ndarray | Problem:
    """The VOC SegmentationClass PNG remapped to our label ids (through its folder's labelmap.txt colours, when it has
    one), on the annotation's pixels, or what is wrong."""
    try:
        data = path.read_bytes()
        class_map = read_voc_class_png(data, label_ids=masks.label_ids, colours=masks.colours.get(path.parent))
    except OSError as exc:
        return error(file, "mask_unreadable", f"cannot read its mask {path.name}: {exc.strerror or exc}")
    except UnknownMaskClassError as exc:
        return error(file, "mask_unknown_class", f"{path.name}: {exc}; the image is kept without a mask")
    except MaskError as exc:
        return error(file, "mask_unreadable", f"{path.name}: {exc}; the image is kept without a mask")
    try:
        check_mask_size(class_map, frame.height, frame.width)
    except MaskError as exc:
        message = f"{path.name}: {exc}; save the mask at the image's size (the image is kept without a mask)"
        return error(file, "mask_size_mismatch", message)
    return class_map


def _paint_objects(record: Record, frame: Frame, label_ids: Mapping[str, int], problems: list[Problem]) -> np.ndarray:
    """The class map from the boxes' COCO segmentations; objects whose pixels are unknown are ignored in it."""
    objects: list[tuple[np.ndarray, int, bool]] = []
    ignored = np.zeros((frame.height, frame.width), dtype=bool)
    for index, box in enumerate(record.boxes):
        mask = _object_mask(box, index, record.filename, frame, problems)
        label = label_ids.get(box.label)
        if mask is None or label is None:
            ignored |= _box_region(box, frame) if mask is None else mask
        else:
            objects.append((mask, label, box.is_crowd))
    class_map = paint_class_map(objects, frame.height, frame.width)
    class_map[ignored] = IGNORE
    return class_map


def _object_mask(box: Box, index: int, file: str, frame: Frame, problems: list[Problem]) -> np.ndarray | None:
    """One object's bool mask, or None (with a problem) when it has no segmentation or a broken one."""
    if box.segmentation is None:
        message = "this object has no segmentation; its box is ignored in the image's mask: add its polygons"
        problems.append(warning(file, "mask_missing", message, index))
        return None
    value = box.segmentation.model_dump() if isinstance(box.segmentation, CocoRle) else box.segmentation
    try:
        return coco_segmentation_mask(value, frame.height, frame.width)
    except MaskError as exc:
        problems.append(error(file, "invalid_segmentation", f"{exc}; its box is ignored in the mask", index))
        return None


def _box_region(box: Box, frame: Frame) -> np.ndarray:
    """bool [height, width]: the pixels a box covers (none when a corner is not a number)."""
    region = np.zeros((frame.height, frame.width), dtype=bool)
    coords = (box.xmin, box.ymin, box.xmax, box.ymax)
    if all(math.isfinite(c) for c in coords):
        x0, y0 = max(0, math.floor(box.xmin)), max(0, math.floor(box.ymin))
        region[y0 : max(y0, math.ceil(box.ymax)), x0 : max(x0, math.ceil(box.xmax))] = True
    return region


def _upright(class_map: np.ndarray, orientation: int) -> np.ndarray:
    """The class map turned upright by its image's EXIF orientation."""
    transpose = _EXIF_TRANSPOSE.get(orientation)
    if transpose is None:
        return class_map
    return np.asarray(Image.fromarray(class_map).transpose(transpose), dtype=np.uint8)


class ClassPixels:
    """Pixels per class id summed over the kept images' class maps, for the report's segmentation summary."""

    def __init__(self) -> None:
        self.counts = np.zeros(IGNORE + 1, dtype=np.int64)
        self.images = 0

    def add(self, pixels: Mapping[int, int]) -> None:
        """Count one image's class map (its pixels per class id)."""
        for class_id, count in pixels.items():
            self.counts[class_id] += count
        self.images += 1

    def summary(self, images: Mapping[str, int], label_map: Mapping[int, str]) -> SegmentationSummary | None:
        """The summary for images with maps per split; None when no image had one."""
        if not self.images:
            return None
        labelled = self.counts[:IGNORE]
        total = max(int(labelled.sum()), 1)
        names = {BACKGROUND: BACKGROUND_NAME, **dict(sorted(label_map.items()))}
        return SegmentationSummary(
            images=dict(images),
            class_shares={name: round(int(labelled[i]) / total, 6) for i, name in names.items() if i < IGNORE},
            ignore_share=round(int(self.counts[IGNORE]) / max(int(self.counts.sum()), 1), 6),
        )
