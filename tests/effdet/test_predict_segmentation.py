"""A class map as a paletted PNG, as COCO RLE per class and drawn over its image (no TensorFlow needed)."""

import io

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from effdet.data.masks import voc_colormap
from effdet.predict import Detection, draw_detections, draw_segmentation, mask_png, mask_rle


def class_map() -> np.ndarray:
    """uint8 [6, 8]: background with a block of class 1, a stripe of class 3 and an ignored corner."""
    classes = np.zeros((6, 8), np.uint8)
    classes[1:4, 2:5] = 1
    classes[:, 7] = 3
    classes[5, 0] = 255
    return classes


def photo(width: int = 8, height: int = 6) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_mask_png_reads_back_as_the_class_ids_in_voc_colours() -> None:
    image = Image.open(io.BytesIO(mask_png(class_map())))
    assert image.mode == "P"
    np.testing.assert_array_equal(np.asarray(image), class_map())
    palette = np.asarray(image.getpalette(), np.uint8).reshape(-1, 3)
    np.testing.assert_array_equal(palette[[0, 1, 3, 255]], voc_colormap()[[0, 1, 3, 255]])


def test_mask_rle_decodes_to_each_class_pixels() -> None:
    masks = mask_rle(class_map(), {1: "plate", 2: "car"})
    assert [(m.class_id, m.label, m.size, m.area) for m in masks] == [(1, "plate", (6, 8), 9), (3, "3", (6, 8), 6)]
    rebuilt = np.zeros((6, 8), np.uint8)
    for mask in masks:
        decoded = coco_mask.decode({"size": list(mask.size), "counts": mask.counts.encode("ascii")})
        rebuilt[decoded.astype(bool)] = mask.class_id
    expected = class_map()
    expected[expected == 255] = 0  # neither background nor ignore gets a mask
    np.testing.assert_array_equal(rebuilt, expected)


def test_mask_rle_of_an_all_background_map_is_empty() -> None:
    assert mask_rle(np.zeros((3, 4), np.uint8), {}) == []


def test_draw_segmentation_tints_only_the_classes_and_keeps_the_size() -> None:
    original = np.asarray(Image.open(io.BytesIO(photo())).convert("RGB"))
    drawn = draw_segmentation(photo(), class_map(), alpha=0.5)
    assert drawn.size == (8, 6)
    pixels = np.asarray(drawn)
    untouched = (class_map() == 0) | (class_map() == 255)
    np.testing.assert_array_equal(pixels[untouched], original[untouched])
    expected = np.round(0.5 * original[1, 2].astype(np.float32) + 0.5 * voc_colormap()[1].astype(np.float32))
    np.testing.assert_array_equal(pixels[1, 2], expected)
    assert (pixels[~untouched] != original[~untouched]).any(axis=-1).all()


def test_draw_detections_draws_on_a_drawn_segmentation() -> None:
    overlay = draw_segmentation(photo(64, 48), np.ones((48, 64), np.uint8))
    boxed = draw_detections(overlay, [Detection(box=(4, 4, 40, 30), class_id=1, label="plate", score=0.9)])
    assert boxed.size == (64, 48)
    assert not np.array_equal(np.asarray(boxed), np.asarray(overlay))


def test_draw_segmentation_refuses_a_map_of_another_size() -> None:
    with pytest.raises(ValueError, match="crop a padded batch map"):
        draw_segmentation(photo(), np.zeros((6, 9), np.uint8))
