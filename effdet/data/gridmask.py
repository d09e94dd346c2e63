"""GridMask (Chen et al., arXiv:2001.04086): blank square patches on a regular grid, randomly shifted and turned,
so that the network learns to find an object from whichever parts of it stay visible. Boxes are left as they are.

The settings are automl's (aug/gridmask.py, as its input pipeline calls it when `grid_mask` is true):
- the grid unit d is a random integer in [min(0.5 h, 0.3 w), max(0.5 h, 0.3 w)] pixels of the decoded image;
- stripes l = round(0.6 d) wide (at least 1, at most d - 1) are kept along each axis, every d pixels from a
  random offset in [0, d] of its own, so the blanked squares between them have side d - l;
- the grid is drawn on a square (1 + 0.5) times the image's longer side, turned about its centre and cut to the
  image in its middle, so a turn never uncovers a corner;
- the turn is 10 degrees times a normal draw of mean -1 and deviation 1, and an image is masked when a standard
  normal draw is below 0.5 (p = 0.69), which is what automl's code draws (its arguments read as "up to 10
  degrees" and "p = 0.5"). Points are sampled at the nearest grid cell where automl turns the 0/1 grid bilinearly.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import tensorflow as tf

KEEP_RATIO = 0.6
"""Width of a kept stripe as a share of the grid unit."""
MARGIN = 0.5
"""The grid square is (1 + MARGIN) times the image's longer side."""
ROTATION_DEGREES = 10.0
"""Scale of the random turn of the grid."""
APPLY_BELOW = 0.5
"""An image is masked when a standard normal draw falls below this (automl's prob)."""


class Grid(NamedTuple):
    """One random grid: unit d and stripe width l (int32 scalars, pixels), the stripes' offsets along rows and
    columns (int32 [2]), and the turn (float32 scalar, radians, counter-clockwise as shown)."""

    unit: tf.Tensor
    stripe: tf.Tensor
    offsets: tf.Tensor
    angle: tf.Tensor


def draw_grid(height: tf.Tensor, width: tf.Tensor, seed: tf.Tensor) -> Grid:
    """A random grid for an image of height x width pixels, from a stateless seed (int [2])."""
    unit_seed, offset_seed, angle_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    low = tf.cast(tf.minimum(0.5 * h, 0.3 * w), tf.int32)
    high = tf.cast(tf.maximum(0.5 * h, 0.3 * w), tf.int32)
    drawn = tf.random.stateless_uniform([], unit_seed, minval=low, maxval=high + 1, dtype=tf.int32)
    unit = tf.maximum(drawn, 2)  # a stripe and a gap of at least a pixel each, even on a tiny image
    stripe = tf.clip_by_value(tf.cast(tf.cast(unit, tf.float32) * KEEP_RATIO + 0.5, tf.int32), 1, unit - 1)
    offsets = tf.random.stateless_uniform([2], offset_seed, minval=0, maxval=unit + 1, dtype=tf.int32)
    turn = ROTATION_DEGREES * tf.random.stateless_normal([], angle_seed, mean=-1.0, stddev=1.0)
    return Grid(unit=unit, stripe=stripe, offsets=offsets, angle=turn * math.pi / 180.0)


def _on_stripe(coordinate: tf.Tensor, offset: tf.Tensor, grid: Grid, side: tf.Tensor) -> tf.Tensor:
    """Whether a grid-square coordinate (int32) lies on one of the stripes starting at offset."""
    shifted = coordinate - offset
    stripes = side // grid.unit
    return (shifted >= 0) & (shifted % grid.unit < grid.stripe) & (shifted // grid.unit < stripes) & (coordinate < side)


def keep_mask(height: tf.Tensor, width: tf.Tensor, grid: Grid) -> tf.Tensor:
    """bool [height, width]: True where the image is kept (on a row or a column stripe of the turned grid)."""
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    side = tf.cast((1.0 + MARGIN) * tf.maximum(h, w), tf.int32)
    centre = (tf.cast(side, tf.float32) - 1.0) / 2.0
    # Pixel (y, x) of the image is cell (y + top, x + left) of the turned square; turning back finds its cell.
    top = tf.cast((side - tf.cast(height, tf.int32)) // 2, tf.float32)
    left = tf.cast((side - tf.cast(width, tf.int32)) // 2, tf.float32)
    dy = tf.range(h)[:, tf.newaxis] + top - centre
    dx = tf.range(w)[tf.newaxis, :] + left - centre
    cos, sin = tf.cos(grid.angle), tf.sin(grid.angle)
    row = tf.cast(tf.round(sin * dx + cos * dy + centre), tf.int32)
    column = tf.cast(tf.round(cos * dx - sin * dy + centre), tf.int32)
    return _on_stripe(row, grid.offsets[0], grid, side) | _on_stripe(column, grid.offsets[1], grid, side)


def grid_mask(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """GridMask one image (uint8 or float [H, W, 3]): zero the blanked squares, with automl's probability.

    seed: int [2], the stateless seed of this image's draws (the same seed masks the same way).
    """
    grid_seed, apply_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    apply = tf.random.stateless_normal([], apply_seed) < APPLY_BELOW

    def masked() -> tf.Tensor:
        keep = keep_mask(height, width, draw_grid(height, width, grid_seed))
        return image * tf.cast(keep, image.dtype)[..., tf.newaxis]

    return tf.cond(apply, masked, lambda: image)
