"""What each box becomes at a network input size, and which input size keeps the boxes detectable.

The pipeline fits an image into the network input with its aspect kept: the image is scaled by
min(input_height / image_height, input_width / image_width) (effdet.data.anchors_kmeans.input_shapes; training
jitters that scale around 1), so a box's shorter side becomes min(box_width, box_height) times that scale. A box
under `SMALL_PX` pixels on its shorter side is under half the smallest default anchor (anchor_scale 4 times the
finest stride 2**3 = 32 px) and is found poorly, so when more than `MAX_SMALL_SHARE` of the boxes are that small at
the requested size the service suggests the smallest size, a multiple of 128 (2**max_level), that brings them back
under that share, or training on tiles (hparams `tiles`, effdet.data.tiles) when no size up to
`MAX_SUGGESTED_SIZE` does.

Counts are measured at square input sizes (`TABLE_SIZES`, every multiple of 32 from 128 to 1536, which covers
every variant's default size); a 'WxH' input is judged at its shorter side, a lower bound of its scale.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from effdet.config import ImageSize, format_image_size
from effdet.data.anchors_kmeans import input_shapes

SMALL_PX = 16
MEDIUM_PX = 32
MAX_SMALL_SHARE = 0.1
"""More than this share of boxes under SMALL_PX at the requested size gives a warning."""
SIZE_MULTIPLE = 128
MAX_SUGGESTED_SIZE = 1536
TILE_HINT = 640
"""The tile side the advice offers as an example: what a photo of a few thousand pixels cuts into well."""
TABLE_SIZES: tuple[int, ...] = tuple(range(128, MAX_SUGGESTED_SIZE + 1, 32))


class BoxSizeCounts(BaseModel):
    """How many boxes fall in each size class at one square input size, by shorter side in input pixels."""

    image_size: int = Field(description="the square input size (pixels)")
    under_16: int = Field(description="boxes whose shorter side is under 16 px")
    from_16_to_32: int = Field(description="16 px or more and under 32 px")
    over_32: int = Field(description="32 px or more")

    @property
    def num_boxes(self) -> int:
        """All boxes counted."""
        return self.under_16 + self.from_16_to_32 + self.over_32

    @property
    def small_share(self) -> float:
        """The share of boxes under 16 px (0 without boxes)."""
        return self.under_16 / self.num_boxes if self.num_boxes else 0.0

    @property
    def too_many_small(self) -> bool:
        """More than MAX_SMALL_SHARE (a tenth) of the boxes under 16 px, in exact integer arithmetic."""
        return self.under_16 * 10 > self.num_boxes


class InputSizeReport(BaseModel):
    """Box size classes at every size of TABLE_SIZES and at each variant's default input size."""

    by_size: list[BoxSizeCounts]
    by_model: dict[str, BoxSizeCounts]


def shorter_sides(boxes_wh: np.ndarray, images_wh: np.ndarray, image_size: ImageSize) -> np.ndarray:
    """Each box's shorter side in input pixels after the image is fitted into image_size (height, width), aspect
    kept; boxes_wh and images_wh are [N, 2] (width, height) in stored-image pixels. float64 [N]."""
    return np.asarray(input_shapes(boxes_wh, image_size, images_wh).min(axis=1))


def count_sizes(boxes_wh: np.ndarray, images_wh: np.ndarray, size: int) -> BoxSizeCounts:
    """The size classes of the boxes at the square input size `size`."""
    sides = shorter_sides(boxes_wh, images_wh, (size, size))
    return BoxSizeCounts(
        image_size=size,
        under_16=int(np.sum(sides < SMALL_PX)),
        from_16_to_32=int(np.sum((sides >= SMALL_PX) & (sides < MEDIUM_PX))),
        over_32=int(np.sum(sides >= MEDIUM_PX)),
    )


def describe_input_sizes(
    boxes_wh: np.ndarray, images_wh: np.ndarray, model_sizes: dict[str, int]
) -> InputSizeReport | None:
    """The size classes at every TABLE_SIZES size and at each model's default size (name -> square size);
    None without boxes."""
    if not len(boxes_wh):
        return None
    by_size = {size: count_sizes(boxes_wh, images_wh, size) for size in sorted({*TABLE_SIZES, *model_sizes.values()})}
    return InputSizeReport(
        by_size=[by_size[size] for size in TABLE_SIZES],
        by_model={name: by_size[size] for name, size in model_sizes.items()},
    )


def suggest_input_size(report: InputSizeReport, max_level: int = 7) -> int | None:
    """The smallest square size, a multiple of 128 (and of 2**max_level), at which at most a tenth of the boxes
    are under 16 px; None when no size up to MAX_SUGGESTED_SIZE does (then only tiling helps)."""
    multiple = max(SIZE_MULTIPLE, 2**max_level)
    for counts in report.by_size:
        if counts.image_size % multiple == 0 and not counts.too_many_small:
            return counts.image_size
    return None


def counts_at(report: InputSizeReport, image_size: ImageSize) -> BoxSizeCounts | None:
    """The size classes at an input size: the table's entry at its shorter side (exact for a square size, a
    pessimistic bound for 'WxH'; the nearest table size below when it is not one); None below the table."""
    side = min(image_size)
    below = [counts for counts in report.by_size if counts.image_size <= side]
    return below[-1] if below else None


def input_size_warning(report: InputSizeReport, image_size: ImageSize, max_level: int = 7) -> str | None:
    """A warning when more than a tenth of the boxes fall under 16 px at image_size (height, width), with the
    smallest size that avoids it or, when none does, tiling; None otherwise."""
    counts = counts_at(report, image_size)
    if counts is None or not counts.too_many_small:
        return None
    found = (
        f"{counts.small_share:.0%} of the boxes ({counts.under_16} of {counts.num_boxes}) are under {SMALL_PX} px on "
        f"their shorter side at image_size {format_image_size(image_size)}, too small to detect well"
    )
    suggested = suggest_input_size(report, max_level)
    if suggested is None:
        return (
            f"{found}; no image_size up to {MAX_SUGGESTED_SIZE} brings that under {MAX_SMALL_SHARE:.0%}: train on "
            f"tiles (hparams tiles: {TILE_HINT}, a tile side in original pixels, or a grid such as '3x2')"
        )
    at = next(c for c in report.by_size if c.image_size == suggested)
    return (
        f"{found}; image_size {suggested} brings that to {at.small_share:.0%} (hparams image_size: {suggested}; a "
        f"larger input costs memory and time), or train on tiles (hparams tiles: {TILE_HINT})"
    )
