"""From head outputs to detections: top-k candidates, box decoding, per-class NMS, original-image pixels.

Pure TensorFlow ops with static output shapes, so the same function runs eagerly, in `tf.function` and
inside an exported SavedModel. Boxes are [ymin, xmin, ymax, xmax]; class ids are 1-based (0 pads).
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from effdet.anchors import decode_boxes
from effdet.config import NmsConfig


class Detections(NamedTuple):
    """Batched detections, padded to max_output_size.

    boxes: float32 [batch, max, 4] yxyx in original-image pixels; scores: float32 [batch, max];
    classes: int32 [batch, max] (1-based, 0 in padding); num_detections: int32 [batch].
    """

    boxes: tf.Tensor
    scores: tf.Tensor
    classes: tf.Tensor
    num_detections: tf.Tensor


def per_class_nms(
    boxes: tf.Tensor,
    scores: tf.Tensor,
    classes: tf.Tensor,
    nms: NmsConfig,
    score_threshold: float,
    max_output: int,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """NMS of one image, class by class, in one op: each class is shifted to its own region of the plane
    so that boxes of different classes never overlap (boxes must lie in [0, 1], classes 0-based; the returned
    classes are 1-based, padded with 0 to max_output)."""
    shifted = boxes + tf.cast(classes, boxes.dtype)[:, tf.newaxis] * 2.0
    indices, kept_scores = tf.image.non_max_suppression_with_scores(
        shifted,
        scores,
        max_output_size=max_output,
        iou_threshold=nms.resolved_iou_thresh,
        score_threshold=score_threshold,
        soft_nms_sigma=nms.resolved_sigma,
    )
    count = tf.shape(indices)[0]
    pad = max_output - count
    return (
        tf.pad(tf.gather(boxes, indices), [[0, pad], [0, 0]]),
        tf.pad(kept_scores, [[0, pad]]),
        tf.pad(tf.gather(classes, indices) + 1, [[0, pad]]),
        count,
    )


def postprocess(
    cls_logits: tf.Tensor,
    box_outputs: tf.Tensor,
    anchors: tf.Tensor,
    input_size: tuple[int, int],
    nms: NmsConfig,
    image_scales: tf.Tensor | None = None,
    image_sizes: tf.Tensor | None = None,
    score_threshold: float | None = None,
    max_detections: int | None = None,
) -> Detections:
    """Decode and suppress a batch of head outputs.

    cls_logits: float [batch, anchors, num_classes]; box_outputs: float [batch, anchors, 4] ([ty, tx, th, tw]);
    anchors: float [anchors, 4] yxyx in input pixels; input_size: the network input (height, width).
    image_scales: float [batch], original pixels per input pixel (boxes are multiplied by it);
    image_sizes: float [batch, 2], original (height, width) to clip to. score_threshold and max_detections
    default to nms.score_thresh and nms.max_output_size.
    """
    cls_logits = tf.cast(cls_logits, tf.float32)
    box_outputs = tf.cast(box_outputs, tf.float32)
    anchors = tf.cast(anchors, tf.float32)
    num_classes = int(cls_logits.shape[-1])
    num_candidates = int(cls_logits.shape[1]) * num_classes
    top_k = min(nms.resolved_max_inputs, num_candidates)
    max_output = max_detections or nms.max_output_size
    threshold = nms.score_thresh if score_threshold is None else score_threshold

    batch = tf.shape(cls_logits)[0]
    flat_scores = tf.reshape(tf.sigmoid(cls_logits), [batch, -1])
    top_scores, top_indices = tf.math.top_k(flat_scores, k=top_k, sorted=True)
    anchor_ids, class_ids = top_indices // num_classes, top_indices % num_classes
    codes = tf.gather(box_outputs, anchor_ids, batch_dims=1)
    boxes = decode_boxes(codes, tf.gather(anchors, anchor_ids))
    height, width = float(input_size[0]), float(input_size[1])
    normalised = tf.clip_by_value(boxes / [height, width, height, width], 0.0, 1.0)

    def one_image(args: tuple[tf.Tensor, tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, ...]:
        return per_class_nms(*args, nms=nms, score_threshold=threshold, max_output=max_output)

    out_boxes, out_scores, out_classes, counts = tf.map_fn(
        one_image,
        (normalised, top_scores, class_ids),
        fn_output_signature=(
            tf.TensorSpec([max_output, 4], tf.float32),
            tf.TensorSpec([max_output], tf.float32),
            tf.TensorSpec([max_output], tf.int32),
            tf.TensorSpec([], tf.int32),
        ),
    )
    out_boxes = out_boxes * [height, width, height, width]
    if image_scales is not None:
        out_boxes = out_boxes * tf.reshape(tf.cast(image_scales, tf.float32), [-1, 1, 1])
    if image_sizes is not None:
        sizes = tf.cast(image_sizes, tf.float32)
        limits = tf.concat([sizes, sizes], axis=-1)[:, tf.newaxis, :]
        out_boxes = tf.minimum(out_boxes, limits)
    return Detections(out_boxes, out_scores, out_classes, counts)
