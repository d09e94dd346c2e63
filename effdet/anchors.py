"""Anchors, the box coder and target assignment (RetinaNet's scheme, as EfficientDet uses it).

Every location of level l (stride s = 2**l) carries num_scales x len(aspect_ratios) anchors of size
anchor_scale * s * 2**(octave / num_scales), shaped by aspect ratio a = width / height
(width = size * sqrt(a), height = size / sqrt(a)). Anchors are ordered (level, y, x, octave, ratio), the
order in which `flatten_predictions` lays out the head outputs. Boxes are [ymin, xmin, ymax, xmax] in pixels
of the network input everywhere in this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from effdet.config import ModelConfig
from effdet.model.structure import BACKBONE_MAX_LEVEL

MATCH_THRESHOLD = 0.5
"""IoU at or above which an anchor is positive; below it, background (automl: both thresholds 0.5)."""

BACKGROUND = 0
"""Class target of an anchor that matched nothing."""
IGNORE = -1
"""Class target of an anchor that takes no part in the loss (e.g. one matched to a crowd box)."""


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


def _center_size(boxes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    return (ymin + ymax) / 2, (xmin + xmax) / 2, ymax - ymin, xmax - xmin


def encode_boxes(boxes: tf.Tensor, anchors: tf.Tensor) -> tf.Tensor:
    """Regression targets of boxes relative to anchors (Faster R-CNN coder, no scale factors).

    boxes, anchors: float [..., 4] as [ymin, xmin, ymax, xmax]. Returns float [..., 4] as
    [ty, tx, th, tw] = [(y - ya) / ha, (x - xa) / wa, log(h / ha), log(w / wa)].
    """
    y, x, h, w = _center_size(tf.convert_to_tensor(boxes, tf.float32))
    ya, xa, ha, wa = _center_size(tf.convert_to_tensor(anchors, tf.float32))
    tiny = 1e-8  # a degenerate box still encodes to a finite value
    h, w = tf.maximum(h, tiny), tf.maximum(w, tiny)
    return tf.stack([(y - ya) / ha, (x - xa) / wa, tf.math.log(h / ha), tf.math.log(w / wa)], axis=-1)


def decode_boxes(codes: tf.Tensor, anchors: tf.Tensor) -> tf.Tensor:
    """Inverse of `encode_boxes`: [ty, tx, th, tw] relative to anchors -> [ymin, xmin, ymax, xmax]."""
    codes = tf.convert_to_tensor(codes)
    ya, xa, ha, wa = _center_size(tf.cast(anchors, codes.dtype))
    ty, tx, th, tw = tf.unstack(codes, axis=-1)
    y, x = ty * ha + ya, tx * wa + xa
    h, w = tf.exp(th) * ha, tf.exp(tw) * wa
    return tf.stack([y - h / 2, x - w / 2, y + h / 2, x + w / 2], axis=-1)


def pairwise_iou(boxes_a: tf.Tensor, boxes_b: tf.Tensor) -> tf.Tensor:
    """IoU of every pair: boxes_a float [N, 4], boxes_b float [M, 4] (yxyx) -> float [N, M]."""
    a = tf.expand_dims(tf.convert_to_tensor(boxes_a, tf.float32), 1)
    b = tf.expand_dims(tf.convert_to_tensor(boxes_b, tf.float32), 0)
    inter_h = tf.maximum(0.0, tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]))
    inter_w = tf.maximum(0.0, tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]))
    inter = inter_h * inter_w
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return tf.where(union > 0, inter / tf.maximum(union, 1e-12), 0.0)


def assign_targets(
    gt_boxes: tf.Tensor, gt_classes: tf.Tensor, anchors: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Label every anchor of one image.

    gt_boxes: float [M, 4] yxyx in input pixels; gt_classes: int [M], 1-based (<= 0 marks padding).
    anchors: float [N, 4] yxyx. An anchor is positive when its best IoU with a ground-truth box is
    >= 0.5; each ground-truth box is also force-matched to its best anchor (so no box goes unlearned).
    Returns class targets int32 [N] (matched 1-based class id, 0 = background), box targets float32
    [N, 4] ([ty, tx, th, tw] of the matched box, zeros for background) and the positive count (float32).
    """
    # One always-invalid padding box keeps every gather well defined, even for an image with no boxes.
    gt_boxes = tf.concat([tf.reshape(tf.cast(gt_boxes, tf.float32), [-1, 4]), tf.zeros([1, 4])], axis=0)
    gt_classes = tf.concat([tf.reshape(tf.cast(gt_classes, tf.int32), [-1]), [0]], axis=0)
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    num_anchors = tf.shape(anchors)[0]
    valid = gt_classes > 0
    iou = tf.where(valid[tf.newaxis, :], pairwise_iou(anchors, gt_boxes), -1.0)  # [N, M]
    best_gt = tf.argmax(iou, axis=1, output_type=tf.int32)
    matched = tf.reduce_max(iou, axis=1) >= MATCH_THRESHOLD
    # Force match: each valid box claims its best anchor; on a tie between boxes the first one wins.
    best_anchor = tf.argmax(iou, axis=0, output_type=tf.int32)  # [M]
    claims = tf.one_hot(best_anchor, num_anchors, dtype=tf.int32) * tf.cast(valid, tf.int32)[:, tf.newaxis]
    forced = tf.reduce_max(claims, axis=0) > 0  # [N]
    match = tf.where(forced, tf.argmax(claims, axis=0, output_type=tf.int32), tf.where(matched, best_gt, -1))
    positive = match >= 0
    safe = tf.maximum(match, 0)
    cls_targets = tf.where(positive, tf.gather(gt_classes, safe), BACKGROUND)
    codes = encode_boxes(tf.gather(gt_boxes, safe), anchors)
    box_targets = tf.where(positive[:, tf.newaxis], codes, 0.0)
    return cls_targets, box_targets, tf.reduce_sum(tf.cast(positive, tf.float32))
