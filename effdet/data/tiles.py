"""Tiles of a large image: the overlapping windows that training crops and prediction runs on.

Small objects in a large photo shrink below what the network sees once the whole image is resized to the
input size; a tile resized instead keeps them large. Windows are [ymin, xmin, ymax, xmax] in original pixels
(int32), the whole image first, then the tiles row by row; an image no larger than one tile has only the
whole-image window. Pure TensorFlow ops, so the same code runs in tf.data, eagerly and in a SavedModel.
"""

from __future__ import annotations

import tensorflow as tf

from effdet.config import InputConfig

MIN_VISIBLE = 0.5
"""A box cut by a tile border stays a training box when at least this share of its area lies in the tile."""


def _axis_starts(length: tf.Tensor, tile: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
    """count window starts along an axis, evenly spread from 0 to length - tile (int32)."""
    last = tf.maximum(length - tile, 0.0)
    steps = tf.maximum(count - 1, 1)
    return tf.cast(tf.round(tf.range(count, dtype=tf.float32) * last / tf.cast(steps, tf.float32)), tf.int32)


def _axis(length: tf.Tensor, settings: InputConfig, grid_count: int | None) -> tuple[tf.Tensor, tf.Tensor]:
    """(starts, tile length) along one axis of length pixels (float32 scalar)."""
    overlap = settings.tile_overlap
    if grid_count is not None:
        tile = tf.math.ceil(length / (grid_count - (grid_count - 1) * overlap))
        count = tf.constant(grid_count)
    else:
        tile = tf.minimum(tf.constant(float(settings.tiles or 0)), length)
        stride = tf.maximum(tile * (1.0 - overlap), 1.0)
        count = tf.cast(tf.math.ceil(tf.maximum(length - tile, 0.0) / stride), tf.int32) + 1
    return _axis_starts(length, tile, count), tf.cast(tile, tf.int32)


def tile_windows(height: tf.Tensor, width: tf.Tensor, settings: InputConfig) -> tf.Tensor:
    """Windows of an image of height x width pixels: int32 [n, 4] yxyx, the whole image first (see module)."""
    grid = settings.tile_grid
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    whole = tf.stack([0, 0, tf.cast(height, tf.int32), tf.cast(width, tf.int32)])[tf.newaxis]
    if settings.tiles is None:
        return whole
    ys, tile_h = _axis(h, settings, grid[1] if grid else None)
    xs, tile_w = _axis(w, settings, grid[0] if grid else None)
    y0, x0 = tf.meshgrid(ys, xs, indexing="ij")
    y0, x0 = tf.reshape(y0, [-1]), tf.reshape(x0, [-1])
    tiles = tf.stack([y0, x0, y0 + tile_h, x0 + tile_w], axis=1)
    # One tile covering the whole image adds nothing to the whole-image window.
    tiles = tf.boolean_mask(tiles, tf.reduce_any(tf.not_equal(tiles, whole), axis=1))
    return tf.concat([whole, tiles], axis=0)


def crop_boxes(boxes: tf.Tensor, window: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Boxes (float [n, 4] yxyx, original pixels) clipped to window and shifted into it, and which of them stay
    (bool [n]: at least MIN_VISIBLE of the box's area inside)."""
    low = tf.cast(tf.concat([window[:2], window[:2]], axis=0), boxes.dtype)
    high = tf.cast(tf.concat([window[2:], window[2:]], axis=0), boxes.dtype)
    clipped = tf.clip_by_value(boxes, low, high)

    def area(b: tf.Tensor) -> tf.Tensor:
        return tf.maximum(b[:, 2] - b[:, 0], 0.0) * tf.maximum(b[:, 3] - b[:, 1], 0.0)

    keep = area(clipped) >= MIN_VISIBLE * tf.maximum(area(boxes), 1e-6)
    return clipped - low, keep


def _without_index(tile: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    return {key: value for key, value in tile.items() if key != "tile_index"}


def tile_examples(settings: InputConfig, seed: int | None = None):  # type: ignore[no-untyped-def]
    """A tf.data flat_map function: one parsed example -> the whole image and its tiles as examples.

    Each output example holds the decoded uint8 crop as `image` and boxes normalised to the crop; tiles with
    no box left are kept at settings.tile_empty_ratio, and crowd flags follow their boxes.
    """

    def split(example: dict[str, tf.Tensor]) -> tf.data.Dataset:
        image = tf.io.decode_image(example["image"], channels=3, expand_animations=False)
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        size = tf.cast(tf.stack([height, width, height, width]), tf.float32)
        boxes = example["boxes"] * size
        crowd = example["is_crowd"]
        crowd_aligned = tf.shape(crowd)[0] == tf.shape(example["classes"])[0]
        windows = tile_windows(height, width, settings)

        def crop(index: tf.Tensor, window: tf.Tensor) -> dict[str, tf.Tensor]:
            shifted, keep = crop_boxes(boxes, window)
            crop_size = tf.cast(tf.concat([window[2:] - window[:2]] * 2, axis=0), tf.float32)
            kept_crowd = tf.cond(crowd_aligned, lambda: tf.boolean_mask(crowd, keep), lambda: crowd)
            return {
                **example,
                "image": image[window[0] : window[2], window[1] : window[3]],
                "boxes": tf.boolean_mask(shifted, keep) / crop_size,
                "classes": tf.boolean_mask(example["classes"], keep),
                "is_crowd": kept_crowd,
                "tile_index": index,
            }

        def wanted(tile: dict[str, tf.Tensor]) -> tf.Tensor:
            draw = tf.random.uniform([], seed=seed)
            has_boxes = tf.shape(tile["classes"])[0] > 0
            return (tile["tile_index"] == 0) | has_boxes | (draw < settings.tile_empty_ratio)

        count = tf.shape(windows, tf.int64)[0]
        indexed = tf.data.Dataset.zip(tf.data.Dataset.range(count), tf.data.Dataset.from_tensor_slices(windows))
        return indexed.map(crop).filter(wanted).map(_without_index)

    return split
