"""Tiled prediction: detect on the whole image and on its overlapping tiles, then merge the boxes.

Each window (effdet.data.tiles) is prepared and detected like a whole image; its boxes move back into the
original image's pixels. A box that ends at a tile's inner border is a cut object, whole in a neighbouring
tile when the overlap covers it, so it is dropped; what remains is merged across windows by class-wise hard
NMS in original pixels. Pure TensorFlow, so evaluation and the exported SavedModel run the same code.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from effdet.config import InputConfig, NmsConfig
from effdet.data.tiles import tile_windows
from effdet.postprocess import Detections, per_class_nms

MERGE_NMS = NmsConfig(method="hard", iou_thresh=0.5)
"""How the windows' boxes are merged: the same object seen by two windows overlaps itself far above 0.5."""
BORDER_MARGIN = 0.01
"""A box whose edge lies within this share of the tile's side (at least 2 px) of an inner border is cut."""

Prepare = Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor, tf.Tensor]]
"""uint8 image [h, w, 3] -> (network input [H, W, 3], original pixels per input pixel, (h, w) float32)."""
Detect = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], Detections]
"""A prepared batch (inputs, scales, sizes) -> its detections, boxes yxyx in each input's original pixels."""


def _cut_by_inner_border(boxes: tf.Tensor, windows: tf.Tensor, image_size: tf.Tensor) -> tf.Tensor:
    """bool [windows, k]: boxes (yxyx, image pixels) touching a border of their tile that is not the image's."""
    windows = tf.cast(windows, tf.float32)
    side = tf.minimum(windows[:, 2] - windows[:, 0], windows[:, 3] - windows[:, 1])
    margin = tf.maximum(BORDER_MARGIN * side, 2.0)[:, tf.newaxis]
    height, width = image_size[0], image_size[1]
    low, high = windows[:, tf.newaxis, :2], windows[:, tf.newaxis, 2:]
    inner_low = low > 0.0
    inner_high = high < tf.stack([height, width])[tf.newaxis, tf.newaxis]
    near_low = tf.abs(boxes[..., :2] - low) <= margin[..., tf.newaxis]
    near_high = tf.abs(boxes[..., 2:] - high) <= margin[..., tf.newaxis]
    return tf.reduce_any((near_low & inner_low) | (near_high & inner_high), axis=-1)


def merge_windows(found: Detections, windows: tf.Tensor, image_size: tf.Tensor, max_detections: int) -> Detections:
    """One image's detections from its windows' (boxes in window pixels), merged as the module says.

    found: per window [windows, k, ...]; windows int32 [windows, 4] with the whole image first; image_size
    float32 (height, width). Returns unbatched Detections padded to max_detections, best first.
    """
    offsets = tf.cast(tf.concat([windows[:, :2], windows[:, :2]], axis=1), tf.float32)[:, tf.newaxis]
    boxes = found.boxes + offsets
    k = tf.shape(found.scores)[1]
    real = tf.range(k)[tf.newaxis] < found.num_detections[:, tf.newaxis]
    is_tile = (tf.range(tf.shape(windows)[0]) > 0)[:, tf.newaxis]
    keep = real & ~(is_tile & _cut_by_inner_border(boxes, windows, image_size))
    scale = tf.concat([image_size, image_size], axis=0)
    normalised = tf.clip_by_value(tf.boolean_mask(boxes, keep) / scale, 0.0, 1.0)
    merged_boxes, scores, classes, count = per_class_nms(
        normalised,
        tf.boolean_mask(found.scores, keep),
        tf.boolean_mask(found.classes, keep) - 1,
        MERGE_NMS,
        score_threshold=0.0,
        max_output=max_detections,
    )
    return Detections(merged_boxes * scale, scores, classes, count)


def detect_tiled(
    image: tf.Tensor,
    settings: InputConfig,
    input_size: tuple[int, int],
    prepare: Prepare,
    detect: Detect,
    max_detections: int,
) -> Detections:
    """Detections of one uint8 image [h, w, 3] over the whole image and its tiles (unbatched, see merge);
    input_size is the network's (height, width), what prepare resizes each window to."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    windows = tile_windows(height, width, settings)

    def one(window: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        return prepare(image[window[0] : window[2], window[1] : window[3]])

    signature = (
        tf.TensorSpec([*input_size, 3], tf.float32),
        tf.TensorSpec([], tf.float32),
        tf.TensorSpec([2], tf.float32),
    )
    inputs, scales, sizes = tf.map_fn(one, windows, fn_output_signature=signature)
    image_size = tf.cast(tf.stack([height, width]), tf.float32)
    return merge_windows(detect(inputs, scales, sizes), windows, image_size, max_detections)
