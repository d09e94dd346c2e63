"""Semantic class maps: COCO polygons and RLE, paint order, VOC class PNGs, and the PNG round trip."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from effdet.data.masks import (
    IGNORE,
    VOC_CLASS_NAMES,
    ClassColours,
    MaskError,
    UnknownMaskClassError,
    check_mask_size,
    class_pixel_shares,
    coco_segmentation_mask,
    decode_png,
    encode_png,
    paint_class_map,
    read_voc_class_png,
    voc_colormap,
    voc_palette_names,
)


def _png(array: np.ndarray, mode: str) -> bytes:
    """A PNG of the array; mode P writes the values as indices into VOC's palette, as VOC's own PNGs do."""
    if mode == "P":
        image = Image.new("P", (array.shape[1], array.shape[0]))
        image.putpalette(voc_colormap().ravel().tolist())
        image.putdata(array.ravel().tolist())
    else:
        image = Image.fromarray(array)
    assert image.mode == mode
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _square(height: int, width: int, top: int, left: int, size: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


def test_polygon_square_rasterises_to_its_area() -> None:
    mask = coco_segmentation_mask([[2, 2, 6, 2, 6, 6, 2, 6]], height=10, width=12)
    assert mask.shape == (10, 12)
    assert mask.dtype == np.bool_
    assert mask.sum() == 16
    assert mask[2:6, 2:6].all()


def test_uncompressed_and_compressed_rle_give_the_same_mask() -> None:
    expected = _square(20, 30, 3, 4, 7) | _square(20, 30, 12, 20, 5)
    compressed = coco_mask.encode(np.asfortranarray(expected.astype(np.uint8)))
    flat = expected.ravel(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()  # runs of 0s first
    uncompressed = {"counts": counts, "size": [20, 30]}
    as_text = {"counts": compressed["counts"].decode("ascii"), "size": compressed["size"]}
    np.testing.assert_array_equal(coco_segmentation_mask(uncompressed, 20, 30), expected)
    np.testing.assert_array_equal(coco_segmentation_mask(compressed, 20, 30), expected)
    np.testing.assert_array_equal(coco_segmentation_mask(as_text, 20, 30), expected)


def test_compressed_rle_of_a_large_irregular_mask_decodes_exactly() -> None:
    expected = np.random.default_rng(0).random((97, 131)) < 0.3
    compressed = coco_mask.encode(np.asfortranarray(expected.astype(np.uint8)))
    np.testing.assert_array_equal(coco_segmentation_mask(compressed, 97, 131), expected)


def test_polygon_with_fewer_than_three_points_says_so() -> None:
    with pytest.raises(MaskError, match="at least 3 points"):
        coco_segmentation_mask([[0, 0, 5, 5]], height=10, width=10)


def test_rle_of_another_size_names_both_sizes() -> None:
    rle = coco_mask.encode(np.asfortranarray(np.ones((8, 8), dtype=np.uint8)))
    with pytest.raises(MaskError, match=r"RLE size \[8, 8\] differs .* \[10, 12\]"):
        coco_segmentation_mask(rle, height=10, width=12)


@pytest.mark.parametrize(
    "segmentation",
    [
        {"counts": [3, 1], "size": [4, 4]},  # covers 4 of 16 pixels
        {"counts": "0000", "size": [4, 4]},  # valid characters, zero-length runs
        {"counts": "!!!", "size": [4, 4]},  # not RLE characters
        [[0, 0, 1e12, 0, 1e12, 1e12]],  # crashes pycocotools' rasteriser
        [[0, 0, float("nan"), 0, 5, 5]],
        "not a mask",
        [],
    ],
)
def test_unreadable_segmentations_raise_mask_error(segmentation: object) -> None:
    with pytest.raises(MaskError):
        coco_segmentation_mask(segmentation, height=4, width=4)


def test_smaller_instances_are_painted_over_larger_ones() -> None:
    large = _square(10, 10, 0, 0, 8)
    small = _square(10, 10, 2, 2, 3)
    class_map = paint_class_map([(small, 2, False), (large, 1, False)], height=10, width=10)
    assert class_map.dtype == np.uint8
    assert (class_map[2:5, 2:5] == 2).all()
    assert (class_map[large & ~small] == 1).all()
    assert (class_map[~large] == 0).all()


def test_crowd_regions_become_ignore_and_win_over_instances() -> None:
    person = _square(10, 10, 0, 0, 4)
    crowd = _square(10, 10, 2, 2, 6)
    class_map = paint_class_map([(crowd, 1, True), (person, 1, False)], height=10, width=10)
    assert (class_map[crowd] == IGNORE).all()
    assert (class_map[person & ~crowd] == 1).all()
    assert class_map.sum() == IGNORE * 36 + 1 * (16 - 4)


def test_paint_rejects_a_mask_of_another_size() -> None:
    with pytest.raises(MaskError, match="mask is 8x6 but its image is 10x10"):
        paint_class_map([(np.ones((6, 8), dtype=bool), 1, False)], height=10, width=10)


def test_voc_palette_png_is_remapped_to_our_ids_by_class_name() -> None:
    indices = np.array([[0, 15, 255], [15, 0, 0]], dtype=np.uint8)
    class_map = read_voc_class_png(_png(indices, "P"), label_ids={"person": 1})
    np.testing.assert_array_equal(class_map, [[0, 1, IGNORE], [1, 0, 0]])


def test_voc_greyscale_png_reads_like_a_palette_one() -> None:
    indices = np.array([[0, 15, 255, 1]], dtype=np.uint8)
    class_map = read_voc_class_png(_png(indices, "L"), label_ids={"person": 3, "aeroplane": 7})
    np.testing.assert_array_equal(class_map, [[0, 3, IGNORE, 7]])


def test_voc_class_outside_our_labels_is_named_with_the_known_ones() -> None:
    indices = np.array([[0, 15, 12]], dtype=np.uint8)  # 12 = dog
    with pytest.raises(MaskError, match=r"class 'dog' \(palette index 12\).*\(cat, person\)"):
        read_voc_class_png(_png(indices, "P"), label_ids={"person": 1, "cat": 2})


def test_voc_rgb_png_in_voc_colours_maps_like_the_indices() -> None:
    indices = np.array([[0, 15, 255], [15, 8, 0]], dtype=np.uint8)
    rgb = voc_colormap()[indices]
    class_map = read_voc_class_png(_png(rgb, "RGB"), label_ids={"cat": 2, "person": 1})
    np.testing.assert_array_equal(class_map, [[0, 1, IGNORE], [1, 2, 0]])


def test_voc_rgb_png_with_a_foreign_colour_is_refused() -> None:
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[0, 0] = (1, 2, 3)
    with pytest.raises(MaskError, match="#010203"):
        read_voc_class_png(_png(rgb, "RGB"), label_ids={"person": 1})


CUPS = ClassColours((("background", (0, 0, 0)), ("cup", (250, 50, 83)), ("lid", (0, 128, 0))))
"""A labelmap.txt's classes whose 'lid' colour is VOC's bicycle (index 2)."""


def test_labelmap_colours_name_rgb_and_palette_pixels_by_colour() -> None:
    colours = np.array([[(0, 0, 0), (250, 50, 83)], [(0, 128, 0), (0, 0, 0)]], dtype=np.uint8)
    rgb = read_voc_class_png(_png(colours, "RGB"), label_ids={"lid": 1, "cup": 2}, colours=CUPS)
    np.testing.assert_array_equal(rgb, [[0, 2], [1, 0]])
    image = Image.fromarray(np.array([[0, 3], [2, 0]], dtype=np.uint8), mode="P")  # VOC's index 2, its own 3
    image.putpalette([0, 0, 0, 9, 9, 9, 0, 128, 0, 250, 50, 83])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    palette = read_voc_class_png(buffer.getvalue(), label_ids={"lid": 1, "cup": 2}, colours=CUPS)
    np.testing.assert_array_equal(palette, [[0, 2], [1, 0]])


def test_labelmap_greyscale_values_count_its_lines() -> None:
    values = np.array([[0, 1, 2, 255]], dtype=np.uint8)
    class_map = read_voc_class_png(_png(values, "L"), label_ids={"lid": 1, "cup": 2}, colours=CUPS)
    np.testing.assert_array_equal(class_map, [[0, 2, 1, IGNORE]])
    with pytest.raises(UnknownMaskClassError, match=r"value 3, but labelmap\.txt lists 3 classes"):
        read_voc_class_png(_png(values + 1, "L"), label_ids={"lid": 1, "cup": 2}, colours=CUPS)


def test_labelmap_class_outside_our_labels_is_named_with_its_colour() -> None:
    colours = np.array([[(0, 0, 0), (0, 128, 0)]], dtype=np.uint8)
    with pytest.raises(UnknownMaskClassError, match=r"class 'lid' \(colour #008000\).*\(cup\)"):
        read_voc_class_png(_png(colours, "RGB"), label_ids={"cup": 1}, colours=CUPS)


def test_voc_colormap_has_voc_colours() -> None:
    colormap = voc_colormap()
    assert colormap.shape == (256, 3)
    assert colormap[1].tolist() == [128, 0, 0]
    assert colormap[15].tolist() == [192, 128, 128]
    assert colormap[255].tolist() == [224, 224, 192]
    assert len({tuple(colour) for colour in colormap.tolist()}) == 256


def test_voc_palette_names_cover_the_twenty_classes() -> None:
    names = voc_palette_names()
    assert names[1] == "aeroplane"
    assert names[15] == "person"
    assert sorted(names) == list(range(1, 21))
    assert len(VOC_CLASS_NAMES) == 21


@pytest.mark.parametrize("data", [b"", b"not a png", b"\x89PNG\r\n\x1a\n broken"])
def test_unreadable_pngs_raise_mask_error(data: bytes) -> None:
    with pytest.raises(MaskError):
        read_voc_class_png(data, label_ids={"person": 1})
    with pytest.raises(MaskError):
        decode_png(data)


def test_jpeg_mask_is_refused_as_lossy() -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(buffer, format="JPEG")
    with pytest.raises(MaskError, match="not PNG"):
        read_voc_class_png(buffer.getvalue(), label_ids={"person": 1})


def test_png_round_trip_is_lossless() -> None:
    class_map = np.random.default_rng(1).integers(0, 256, size=(33, 47), dtype=np.uint8)
    np.testing.assert_array_equal(decode_png(encode_png(class_map)), class_map)


def test_decode_refuses_a_png_that_is_not_greyscale() -> None:
    with pytest.raises(MaskError, match="mode RGB"):
        decode_png(_png(np.zeros((2, 2, 3), dtype=np.uint8), "RGB"))


def test_check_mask_size_names_both_sizes() -> None:
    check_mask_size(np.zeros((3, 5), dtype=np.uint8), height=3, width=5)
    with pytest.raises(MaskError, match="mask is 5x3 but its image is 3x5"):
        check_mask_size(np.zeros((3, 5), dtype=np.uint8), height=5, width=3)


def test_class_pixel_shares_leave_ignored_pixels_out() -> None:
    class_map = np.array([[0, 0, 1, 2], [2, 2, IGNORE, IGNORE]], dtype=np.uint8)
    np.testing.assert_array_equal(class_pixel_shares(class_map, 3), [2 / 6, 1 / 6, 3 / 6, 0.0])
    np.testing.assert_array_equal(class_pixel_shares(np.full((2, 2), IGNORE, dtype=np.uint8), 1), [0.0, 0.0])
