"""The anchor grid (RetinaNet's scheme, as EfficientDet uses it), in numpy alone so that serving code that
decodes raw head outputs (effdet.tflite_runtime) needs no TensorFlow.

Every location of level l (stride s = 2**l) carries num_scales x len(aspect_ratios) anchors of size
anchor_scale * s * 2**(octave / num_scales), shaped by aspect ratio a = width / height
(width = size * sqrt(a), height = size / sqrt(a)). Anchors are ordered (level, y, x, octave, ratio), the
order in which `flatten_predictions` lays out the head outputs. Boxes are [ymin, xmin, ymax, xmax] in pixels
of the network input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from effdet.config import ModelConfig
from effdet.model.structure import BACKBONE_MAX_LEVEL


@dataclass(frozen=True)
class Anchors:
    """The anchor grid of one input size.

    boxes: float32 [num_anchors, 4] as [ymin, xmin, ymax, xmax] in input pixels.
    level_sizes: (level, height, width) of each feature map, in order.
    """

    boxes: np.ndarray
    level_sizes: tuple[tuple[int, int, int], ...]
    anchors_per_location: int

    @property
    def num_anchors(self) -> int:
        return int(self.boxes.shape[0])

    def level_counts(self) -> list[int]:
        """Anchors per level, in order: split points for per-level tensors."""
        return [h * w * self.anchors_per_location for _, h, w in self.level_sizes]


def feature_sizes(image_size: tuple[int, int], max_level: int) -> list[tuple[int, int]]:
    """(height, width) of the feature map of every level 0..max_level: each level halves, rounding up."""
    sizes = [image_size]
    for _ in range(max_level):
        height, width = sizes[-1]
        sizes.append(((height + 1) // 2, (width + 1) // 2))
    return sizes


def generate_anchors(
    image_size: tuple[int, int],
    min_level: int,
    max_level: int,
    num_scales: int,
    aspect_ratios: list[float],
    anchor_scale: float,
) -> Anchors:
    """Anchor boxes for an input of image_size (height, width).

    Every backbone stride (2**level, level <= 5) must divide the input. Above level 5 a size that the
    stride does not divide (e.g. the Lite variants' 320 at level 7) gives a rounded-up grid whose stride is
    image size / grid size, as in automl (320 -> 3x3 anchors at level 7, 106.7 pixels apart).
    """
    height, width = image_size
    per_level, sizes = [], []
    grids = feature_sizes(image_size, max_level)
    for level in range(min_level, max_level + 1):
        # the backbone's strided levels must divide the input; the pooled ones above round up (automl's get_feat_sizes)
        if level <= BACKBONE_MAX_LEVEL and (height % 2**level or width % 2**level):
            raise ValueError(f"image size {width}x{height} is not divisible by the level-{level} stride {2**level}")
        rows, cols = grids[level]
        stride_y, stride_x = height / rows, width / cols
        centers_y = (np.arange(rows) + 0.5) * stride_y
        centers_x = (np.arange(cols) + 0.5) * stride_x
        half_sizes = []
        for octave in range(num_scales):
            octave_scale = anchor_scale * 2 ** (octave / num_scales)
            for ratio in aspect_ratios:
                half_sizes.append(
                    (octave_scale * stride_y / np.sqrt(ratio) / 2, octave_scale * stride_x * np.sqrt(ratio) / 2)
                )
        half_h, half_w = np.array(half_sizes).T  # [A]
        cy = centers_y[:, None, None]
        cx = centers_x[None, :, None]
        boxes = np.stack(
            np.broadcast_arrays(cy - half_h, cx - half_w, cy + half_h, cx + half_w), axis=-1
        )  # [rows, cols, A, 4]
        per_level.append(boxes.reshape(-1, 4))
        sizes.append((level, rows, cols))
    return Anchors(np.concatenate(per_level).astype(np.float32), tuple(sizes), num_scales * len(aspect_ratios))


def anchors_for(config: ModelConfig) -> Anchors:
    """The anchor grid of a model config at its image_size."""
    return generate_anchors(
        config.image_size,
        config.min_level,
        config.max_level,
        config.num_scales,
        list(config.ratios),
        config.scale,
    )
