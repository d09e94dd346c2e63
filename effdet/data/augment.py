"""Geometric augmentation and resizing that keep boxes on their objects.

Images are float [height, width, 3]; boxes are float [N, 4] as [ymin, xmin, ymax, xmax] in pixels of the
image they come with. Resizing follows automl's input pipeline: scale the image so it fits the network
input (times a random jitter factor when training), crop a random window when it is larger, pad the rest
with zeros at the bottom and right. automl's `target_size` moves the size the jitter factor multiplies (so a
model trained at one size sees objects at the scale of another), and `scale_range` maps the placed image
from [0, 255] to [-1, 1] (`to_unit_range`).
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf


class Resized(NamedTuple):
    """An image placed in the network input, its boxes, and how to map boxes back.

    image: float [target_h, target_w, 3]; boxes: float [N, 4] yxyx in input pixels (clipped);
    keep: bool [N], False for boxes the crop left with no area; scale: input pixels per original pixel;
    scaled_size: int32 [2] the resized image's (height, width) and offset: int32 [2] the window's top-left in it,
    so that a mask can be placed the same way (`place_mask`).
    """

    image: tf.Tensor
    boxes: tf.Tensor
    keep: tf.Tensor
    scale: tf.Tensor
    scaled_size: tf.Tensor
    offset: tf.Tensor


def random_horizontal_flip(image: tf.Tensor, boxes: tf.Tensor, seed: int | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """Mirror the image and its boxes left-right with probability 0.5."""
    flip = tf.random.uniform([], seed=seed) < 0.5
    width = tf.cast(tf.shape(image)[1], boxes.dtype)

    def flipped() -> tuple[tf.Tensor, tf.Tensor]:
        ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
        return tf.image.flip_left_right(image), tf.stack([ymin, width - xmax, ymax, width - xmin], axis=-1)

    return tf.cond(flip, flipped, lambda: (image, boxes))


def _derived(seed: int | None, index: int) -> int | None:
    """A distinct op seed per random draw, so draws seeded alike are not equal."""
    return None if seed is None else seed * 7 + index


def _random_offset(room: tf.Tensor, seed: int | None) -> tf.Tensor:
    """A uniform integer offset in [0, room] (0 when the image is not larger than the window)."""
    span = tf.cast(tf.maximum(room, 0) + 1, tf.float32)
    return tf.minimum(tf.cast(tf.random.uniform([], seed=seed) * span, tf.int32), tf.maximum(room, 0))


def resize_and_crop(
    image: tf.Tensor,
    boxes: tf.Tensor,
    target_size: tuple[int, int],
    jitter: tuple[float, float] | None = None,
    seed: int | None = None,
    jitter_around: tuple[int, int] | None = None,
) -> Resized:
    """Fit the image into target_size (height, width) keeping its aspect ratio, optionally jittered.

    With jitter (min, max) the image is scaled to fit jitter_around (default target_size) * factor, factor
    uniform in [min, max], and a random target-sized window is cut from it; without, the window is the
    top-left corner (eval).
    """
    target_h, target_w = target_size
    height = tf.cast(tf.shape(image)[0], tf.float32)
    width = tf.cast(tf.shape(image)[1], tf.float32)
    fit_h, fit_w = target_size
    factor = tf.constant(1.0)
    if jitter is not None:
        factor = tf.random.uniform([], jitter[0], jitter[1], seed=_derived(seed, 0))
        fit_h, fit_w = jitter_around or target_size
    scale = tf.minimum(factor * fit_h / height, factor * fit_w / width)
    scaled_h = tf.cast(tf.round(height * scale), tf.int32)
    scaled_w = tf.cast(tf.round(width * scale), tf.int32)
    resized = tf.image.resize(image, [scaled_h, scaled_w], method="bilinear")
    offset_y = offset_x = tf.constant(0)
    if jitter is not None:
        offset_y = _random_offset(scaled_h - target_h, _derived(seed, 1))
        offset_x = _random_offset(scaled_w - target_w, _derived(seed, 2))
    window = resized[offset_y : offset_y + target_h, offset_x : offset_x + target_w]
    padded = tf.image.pad_to_bounding_box(window, 0, 0, target_h, target_w)

    shift = tf.cast(tf.stack([offset_y, offset_x, offset_y, offset_x]), tf.float32)
    moved = boxes * scale - shift
    limits = tf.cast(tf.minimum(tf.stack([scaled_h - offset_y, scaled_w - offset_x]), [target_h, target_w]), tf.float32)
    clipped = tf.clip_by_value(moved, 0.0, tf.concat([limits, limits], axis=0))
    keep = (clipped[:, 2] - clipped[:, 0] > 0) & (clipped[:, 3] - clipped[:, 1] > 0)
    return Resized(padded, clipped, keep, scale, tf.stack([scaled_h, scaled_w]), tf.stack([offset_y, offset_x]))


def place_mask(mask: tf.Tensor, placed: Resized, target_size: tuple[int, int], fill: int) -> tf.Tensor:
    """A per-pixel label map [height, width, 1] moved as `resize_and_crop` moved its image: nearest-neighbour
    resize (labels never blend), the same window, the rest filled with `fill` (the ignore label)."""
    target_h, target_w = target_size
    resized = tf.image.resize(mask, placed.scaled_size, method="nearest")
    window = resized[placed.offset[0] : placed.offset[0] + target_h, placed.offset[1] : placed.offset[1] + target_w]
    pad_h, pad_w = target_h - tf.shape(window)[0], target_w - tf.shape(window)[1]
    padded = tf.pad(window, [[0, pad_h], [0, pad_w], [0, 0]], constant_values=tf.cast(fill, mask.dtype))
    return tf.ensure_shape(padded, [target_h, target_w, 1])


def to_unit_range(image: tf.Tensor) -> tf.Tensor:
    """automl's scale_range: x * 2 / 255 - 1 on the placed image, padding included (so [0, 255] -> [-1, 1] with
    mean_rgb 0 and stddev_rgb 1, the range of the AdvProp backbones)."""
    return image * (2.0 / 255.0) - 1.0
