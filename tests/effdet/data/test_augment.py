"""Flip, jitter, crop and pad keep every box on its object, checked on the pixels; target_size and scale_range."""

import numpy as np
import pytest
import tensorflow as tf

from effdet.config import get_config
from effdet.data.augment import random_horizontal_flip, resize_and_crop
from effdet.data.pipeline import make_preprocess


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


def test_jitter_scales_around_target_size_but_keeps_the_output_size() -> None:
    image, boxes = scene()
    around = resize_and_crop(image, boxes, (128, 128), jitter=(1.0, 1.0), seed=0, jitter_around=(64, 64))
    assert around.image.shape == (128, 128, 3)
    assert float(around.scale) == pytest.approx(min(64 / 120, 64 / 200))  # fits 64x64, not 128x128
    np.testing.assert_allclose(around.boxes[0].numpy(), white_extent(around.image.numpy()), atol=1.0)
    evaluation = resize_and_crop(image, boxes, (128, 128), jitter_around=(64, 64))
    assert float(evaluation.scale) == pytest.approx(128 / 200)  # evaluation always fits the output


def _white_example(height: int, width: int) -> dict[str, tf.Tensor]:
    return {
        "image": tf.fill([height, width, 3], tf.constant(255, tf.uint8)),
        "boxes": tf.constant([[0.25, 0.25, 0.75, 0.75]]),
        "classes": tf.constant([1]),
        "is_crowd": tf.constant([False]),
        "source_id": tf.constant("1"),
    }


@pytest.mark.parametrize("training", [False, True])
def test_scale_range_maps_the_placed_image_to_minus_one_one(training: bool) -> None:
    hparams = {"image_size": 128, "num_classes": 1, "jitter_min": 1.0, "jitter_max": 1.0, "input_rand_hflip": False}
    config = get_config("efficientdet-d0", {**hparams, "mean_rgb": 0.0, "stddev_rgb": 1.0, "scale_range": True})
    images = make_preprocess(config, training=training)(_white_example(64, 128))["images"].numpy()
    np.testing.assert_allclose(images[:64], 1.0)  # white (255) -> 1
    np.testing.assert_allclose(images[64:], -1.0)  # the padding (0) -> -1, as automl maps it after placing
    unscaled = make_preprocess(config.override({"scale_range": False}), training=training)(_white_example(64, 128))
    np.testing.assert_allclose(unscaled["images"].numpy()[:64], 255.0)


def test_target_size_changes_the_training_scale_only() -> None:
    hparams = {"image_size": 128, "num_classes": 1, "jitter_min": 1.0, "jitter_max": 1.0, "target_size": 64}
    config = get_config("efficientdet-d0", hparams)
    trained = make_preprocess(config, training=True)(_white_example(100, 100))
    evaluated = make_preprocess(config, training=False)(_white_example(100, 100))
    assert trained["images"].shape == evaluated["images"].shape == (128, 128, 3)
    assert float(trained["image_scales"]) == pytest.approx(100 / 64)  # original pixels per input pixel
    assert float(evaluated["image_scales"]) == pytest.approx(100 / 128)
