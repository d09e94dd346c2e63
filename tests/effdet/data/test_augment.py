"""Flip, jitter, crop and pad keep every box on its object, checked on the pixels."""

import numpy as np
import pytest
import tensorflow as tf

from effdet.data.augment import random_horizontal_flip, resize_and_crop


def scene() -> tuple[tf.Tensor, tf.Tensor]:
    """A 120x200 black image with a white block at rows 30..70, columns 20..90, and its box."""
    pixels = np.zeros((120, 200, 3), np.float32)
    pixels[30:70, 20:90] = 1.0
    return tf.constant(pixels), tf.constant([[30.0, 20.0, 70.0, 90.0]])


def white_extent(image: np.ndarray) -> tuple[float, float, float, float]:
    rows, cols = np.nonzero(image[..., 0] > 0.5)
    return rows.min(), cols.min(), rows.max() + 1, cols.max() + 1


def test_flip_moves_box_with_pixels() -> None:
    image, boxes = scene()
    seen = set()
    for seed in range(12):
        flipped, moved = random_horizontal_flip(image, boxes, seed=seed)
        np.testing.assert_allclose(moved[0].numpy(), white_extent(flipped.numpy()), atol=0.5)
        seen.add(tuple(moved[0].numpy().tolist()))
    assert seen == {(30.0, 20.0, 70.0, 90.0), (30.0, 110.0, 70.0, 180.0)}


@pytest.mark.parametrize("seed", range(8))
def test_jittered_crop_keeps_box_on_object(seed: int) -> None:
    image, boxes = scene()
    placed = resize_and_crop(image, boxes, (128, 128), jitter=(0.5, 2.0), seed=seed)
    assert placed.image.shape == (128, 128, 3)
    pixels = placed.image.numpy()
    if not bool(placed.keep[0]):
        assert pixels[..., 0].max() < 0.5  # the crop missed the object entirely
        return
    np.testing.assert_allclose(placed.boxes[0].numpy(), white_extent(pixels), atol=1.5)


def test_eval_resize_preserves_aspect_and_pads_bottom_right() -> None:
    image, boxes = scene()
    placed = resize_and_crop(image, boxes, (128, 256))
    assert float(placed.scale) == pytest.approx(min(128 / 120, 256 / 200))
    np.testing.assert_allclose(placed.boxes[0].numpy(), np.array([30, 20, 70, 90]) * float(placed.scale), atol=1e-4)
    pixels = placed.image.numpy()
    np.testing.assert_allclose(placed.boxes[0].numpy(), white_extent(pixels), atol=1.0)
    assert np.all(pixels[:, 214:] == 0)  # 200 * 1.0667 = 213.3 -> padding on the right
