"""Validation of masks: each image's class map on the pixels its boxes are on, and every bad mask a problem."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from effdet.data.class_maps import ClassPixels, MaskClasses
from effdet.data.masks import IGNORE, decode_png, voc_colormap
from effdet.data.records import Box, CocoRle, Record, Segmentation, Severity
from effdet.data.validate import ItemResult, encoded_image, validate_record

LABEL_IDS = {"cat": 1, "dog": 2}


def _jpeg(path: Path, pixels: np.ndarray, orientation: int = 1) -> Path:
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, format="JPEG", quality=100, exif=exif.tobytes())
    return path


def _class_png(path: Path, indices: np.ndarray) -> Path:
    """A VOC SegmentationClass PNG: palette indices into VOC's colour map (8 cat, 12 dog, 255 void)."""
    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    image.putpalette(voc_colormap().ravel().tolist())
    image.save(path, format="PNG")
    return path


def _box(label: str, corners: tuple[float, float, float, float], segmentation: Segmentation | None = None) -> Box:
    xmin, ymin, xmax, ymax = corners
    return Box(xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax, label=label, segmentation=segmentation)


def _square(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _validate(
    image: Path, boxes: list[Box], class_png: Path | None = None, size: tuple[int, int] | None = None
) -> ItemResult:
    width, height = size or (None, None)
    record = Record(
        image_path=image,
        filename=image.name,
        annotation_file="a",
        width=width,
        height=height,
        boxes=boxes,
        class_png=class_png,
    )
    return validate_record(record, frozenset(LABEL_IDS), masks=MaskClasses(LABEL_IDS))


def _class_map(result: ItemResult) -> np.ndarray:
    assert result.item is not None
    assert result.item.mask_png is not None
    return decode_png(result.item.mask_png)


def _codes(result: ItemResult) -> list[str]:
    return [problem.code for problem in result.problems]


def test_coco_polygons_and_rle_paint_our_label_ids(tmp_path: Path) -> None:
    image = _jpeg(tmp_path / "a.jpg", np.zeros((30, 40, 3), np.uint8))
    dog = np.zeros((30, 40), dtype=bool)
    dog[20:25, 30:38] = True
    counts = _runs(dog)
    boxes = [
        _box("cat", (2, 3, 12, 13), _square(2, 3, 12, 13)),
        _box("dog", (30, 20, 38, 25), CocoRle(counts=counts, size=[30, 40])),
    ]
    result = _validate(image, boxes)
    class_map = _class_map(result)
    assert result.problems == []
    assert (class_map[3:13, 2:12] == 1).all()
    assert (class_map[dog] == 2).all()
    assert (class_map == 0).sum() == 30 * 40 - 100 - 40
    assert result.class_pixels == {0: 30 * 40 - 140, 1: 100, 2: 40}
    assert result.item is not None
    assert all(box.segmentation is None for box in result.item.boxes)  # the map carries them now
    assert "mask_png" not in result.item.model_dump()
    assert "mask_png" not in repr(result.item)


def _runs(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE counts of a bool mask (column-major, starting with a run of zeros)."""
    flat = mask.ravel(order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return np.diff(np.concatenate([[0], edges])).tolist()


def test_voc_class_png_is_remapped_by_class_name(tmp_path: Path) -> None:
    image = _jpeg(tmp_path / "a.jpg", np.zeros((20, 30, 3), np.uint8))
    indices = np.zeros((20, 30), np.uint8)
    indices[2:8, 3:9] = 12  # dog in VOC's palette
    indices[10:15, 20:28] = 8  # cat
    indices[1, :] = 255  # void border
    png = _class_png(tmp_path / "a.png", indices)
    result = _validate(image, [_box("dog", (3, 2, 9, 8)), _box("cat", (20, 10, 28, 15))], png)
    class_map = _class_map(result)
    assert result.problems == []
    assert (class_map[2:8, 3:9] == 2).all()
    assert (class_map[10:15, 20:28] == 1).all()
    assert (class_map[1] == IGNORE).all()


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_rotated_mask_turns_like_its_boxes(tmp_path: Path, orientation: int) -> None:
    # Stored 40x20 with a red block at x 5..15, y 2..8; box and mask were drawn on the stored pixels.
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[2:8, 5:15] = (255, 0, 0)
    image = _jpeg(tmp_path / "r.jpg", pixels, orientation)
    indices = np.zeros((20, 40), np.uint8)
    indices[2:8, 5:15] = 8
    png = _class_png(tmp_path / "r.png", indices)
    result = _validate(image, [_box("cat", (5, 2, 15, 8))], png, size=(40, 20))
    class_map = _class_map(result)
    assert result.item is not None
    assert class_map.shape == (result.item.height, result.item.width)
    cat = np.argwhere(class_map == 1)
    (ymin, xmin), (ymax, xmax) = cat.min(axis=0), cat.max(axis=0) + 1
    mapped = result.item.boxes[0]
    assert (mapped.xmin, mapped.ymin, mapped.xmax, mapped.ymax) == (xmin, ymin, xmax, ymax)
    upright = np.asarray(Image.open(io.BytesIO(encoded_image(result.item))))
    assert ((upright[..., 0] > 128) == (class_map == 1)).mean() > 0.97  # JPEG blurs the block's edge


def test_mask_of_another_size_is_left_out_and_the_image_kept(tmp_path: Path) -> None:
    image = _jpeg(tmp_path / "a.jpg", np.zeros((20, 30, 3), np.uint8))
    png = _class_png(tmp_path / "a.png", np.full((21, 30), 8, np.uint8))
    result = _validate(image, [_box("cat", (1, 1, 9, 9))], png)
    assert result.item is not None
    assert result.item.mask_png is None
    assert _codes(result) == ["mask_size_mismatch"]
    assert "30x20" in result.problems[0].message


def test_unreadable_masks_and_unknown_classes_are_errors(tmp_path: Path) -> None:
    image = _jpeg(tmp_path / "a.jpg", np.zeros((20, 30, 3), np.uint8))
    horse = _class_png(tmp_path / "horse.png", np.full((20, 30), 13, np.uint8))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    cat = [_box("cat", (1, 1, 9, 9))]
    assert _codes(_validate(image, cat, horse)) == ["mask_unknown_class"]
    assert "'horse'" in _validate(image, cat, horse).problems[0].message
    assert _codes(_validate(image, cat, broken)) == ["mask_unreadable"]
    assert _codes(_validate(image, cat, tmp_path / "gone.png")) == ["mask_unreadable"]


def test_bad_polygon_ignores_its_object_and_keeps_the_others(tmp_path: Path) -> None:
    image = _jpeg(tmp_path / "a.jpg", np.zeros((20, 30, 3), np.uint8))
    boxes = [_box("cat", (1, 1, 9, 9), _square(1, 1, 9, 9)), _box("dog", (12, 2, 20, 10), [[12.0, 2.0, 20.0, 2.0]])]
    result = _validate(image, boxes)
    class_map = _class_map(result)
    assert _codes(result) == ["invalid_segmentation"]
    assert result.problems[0].severity == Severity.ERROR
    assert result.problems[0].object_index == 1
    assert (class_map[1:9, 1:9] == 1).all()
    assert (class_map[2:10, 12:20] == IGNORE).all()  # its pixels are unknown, not background


def test_unmasked_images_and_objects_are_warned_about(tmp_path: Path) -> None:
    image = _jpeg(tmp_path / "a.jpg", np.zeros((20, 30, 3), np.uint8))
    unmasked = _validate(image, [_box("cat", (1, 1, 9, 9))])
    assert _codes(unmasked) == ["mask_missing"]
    assert unmasked.item is not None
    assert unmasked.item.mask_png is None
    partly = _validate(image, [_box("cat", (1, 1, 9, 9), _square(1, 1, 9, 9)), _box("dog", (12, 2, 20, 10))])
    assert _codes(partly) == ["mask_missing"]
    assert partly.problems[0].object_index == 1
    assert (_class_map(partly)[2:10, 12:20] == IGNORE).all()


def test_all_background_mask_of_an_image_with_objects_is_left_out(tmp_path: Path) -> None:
    image = _jpeg(tmp_path / "a.jpg", np.zeros((20, 30, 3), np.uint8))
    png = _class_png(tmp_path / "a.png", np.zeros((20, 30), np.uint8))
    result = _validate(image, [_box("cat", (1, 1, 9, 9))], png)
    assert _codes(result) == ["mask_empty"]
    assert result.problems[0].severity == Severity.WARNING
    assert result.item is not None
    assert result.item.mask_png is None


def test_class_pixels_summarise_shares_by_name() -> None:
    pixels = ClassPixels()
    pixels.add({0: 60, 1: 20, IGNORE: 20})
    pixels.add({0: 10, 2: 10})
    summary = pixels.summary({"train": 2, "val": 0}, {1: "cat", 2: "dog"})
    assert summary is not None
    assert summary.class_shares == {"background": 0.7, "cat": 0.2, "dog": 0.1}
    assert summary.ignore_share == pytest.approx(20 / 120, abs=1e-6)
    assert ClassPixels().summary({"train": 0}, {1: "cat"}) is None
