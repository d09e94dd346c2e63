"""Box coder and target assignment (RetinaNet's scheme, as EfficientDet uses it); the anchor grid itself is
effdet.anchor_grid. Boxes are [ymin, xmin, ymax, xmax] in pixels of the network input everywhere in this module.
"""

from __future__ import annotations

import tensorflow as tf

MATCH_THRESHOLD = 0.5
"""IoU at or above which an anchor is positive; below it, background (automl: both thresholds 0.5)."""

BACKGROUND = 0
"""Class target of an anchor that matched nothing."""
IGNORE = -1
"""Class target of an anchor that takes no part in the loss (e.g. one matched to a crowd box)."""


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
