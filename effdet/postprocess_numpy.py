"""effdet.postprocess in numpy: raw head outputs of one image to detections, for a TFLite file that holds the
network alone (the int8 export: its calibrator cannot take the in-graph NMS, and box codes decoded after
quantization would lose whole pixels).

The same steps and semantics as the TensorFlow path: sigmoid scores, the top max_nms_inputs (anchor, class)
pairs, the box coder's decoding, boxes clipped to the input, and per-class NMS as TensorFlow's
NonMaxSuppressionV5 does it (a priority queue by score, lower index first on ties; hard NMS drops a box whose
IoU with a kept one exceeds the threshold, gaussian soft-NMS decays its score by exp(-iou^2 / (2 sigma)) and
puts it back, ignoring the IoU threshold as TensorFlow's kernel does). No TensorFlow here.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from effdet.config import NmsConfig


class ImageDetections(NamedTuple):
    """One image's detections, best first: boxes float32 [n, 4] yxyx in network-input pixels, scores float32
    [n], classes int32 [n] (1-based)."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


def decode_boxes(codes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """[ty, tx, th, tw] relative to anchors (both float [..., 4]) -> [ymin, xmin, ymax, xmax]
    (effdet.anchors.decode_boxes)."""
    codes = codes.astype(np.float32)
    anchors = anchors.astype(np.float32)
    ya, xa = (anchors[..., 0] + anchors[..., 2]) / 2, (anchors[..., 1] + anchors[..., 3]) / 2
    ha, wa = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
    y, x = codes[..., 0] * ha + ya, codes[..., 1] * wa + xa
    h, w = np.exp(codes[..., 2]) * ha, np.exp(codes[..., 3]) * wa
    return np.stack([y - h / 2, x - w / 2, y + h / 2, x + w / 2], axis=-1)


class _Corners(NamedTuple):
    """Boxes as TensorFlow's IOU reads them: low and high corners [m, 2] (y, x) and areas [m]."""

    low: np.ndarray
    high: np.ndarray
    area: np.ndarray

    @classmethod
    def of(cls, boxes: np.ndarray) -> _Corners:
        """Corners of boxes [m, 4] given in any corner order."""
        low, high = np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])
        return cls(low, high, np.prod(high - low, axis=1))

    def take(self, keep: np.ndarray) -> _Corners:
        """The boxes where keep (a boolean mask or indices) selects."""
        return _Corners(self.low[keep], self.high[keep], self.area[keep])


def _iou(boxes: _Corners, box: _Corners) -> np.ndarray:
    """IoU of each of boxes with one box, 0 where either has no area; summed in the order of TensorFlow's IOU
    (the candidate's area first), so scores decay to the same last bit."""
    extent = np.minimum(boxes.high, box.high) - np.maximum(boxes.low, box.low)
    overlap = np.prod(np.maximum(extent, 0), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = overlap / (boxes.area + box.area - overlap)
    return np.where((boxes.area > 0) & (box.area > 0), iou, np.float32(0)).astype(np.float32)


def non_max_suppression(
    boxes: np.ndarray, scores: np.ndarray, nms: NmsConfig, score_threshold: float, max_output: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the kept boxes and their (possibly decayed) scores, in the order selected.

    TensorFlow's kernel decays a candidate lazily, when it reaches the top of its queue; decaying every
    candidate as soon as a box is kept selects the same boxes (each step takes the highest current score, the
    lower index on ties) in one vectorised pass per kept box instead of one Python step per candidate: 5,000
    candidates at threshold 0 take milliseconds, not most of a second."""
    iou_threshold = np.float32(nms.resolved_iou_thresh)
    sigma = nms.resolved_sigma
    decay = np.float32(-0.5 / sigma) if sigma > 0 else None
    threshold = np.float32(score_threshold)
    live = np.flatnonzero(scores > threshold)
    current = scores[live].astype(np.float32)
    corners = _Corners.of(boxes[live].astype(np.float32))
    kept: list[int] = []
    kept_scores: list[np.float32] = []
    while len(kept) < max_output and live.size:
        best = int(np.argmax(current))
        kept.append(int(live[best]))
        kept_scores.append(current[best])
        ious = _iou(corners, corners.take(np.array([best])))
        if decay is None:
            survivors = ious <= iou_threshold
        else:
            current = (current * np.exp(decay * ious * ious)).astype(np.float32)
            survivors = current > threshold
        survivors[best] = False
        live, current, corners = live[survivors], current[survivors], corners.take(survivors)
    return np.asarray(kept, np.intp), np.asarray(kept_scores, np.float32)


def postprocess_image(
    class_logits: np.ndarray,
    box_codes: np.ndarray,
    anchors: np.ndarray,
    input_size: tuple[int, int],
    nms: NmsConfig,
    score_threshold: float,
    max_detections: int,
) -> ImageDetections:
    """Detections of one image from its head outputs: class_logits float [anchors, classes], box_codes float
    [anchors, 4], anchors float [anchors, 4] yxyx in input pixels, input_size (height, width)."""
    num_classes = class_logits.shape[1]
    above, scores = _scores_above(class_logits.astype(np.float32).reshape(-1), score_threshold)
    ranked = np.argsort(-scores, kind="stable")[: nms.resolved_max_inputs]
    order, candidate_scores = above[ranked], scores[ranked]
    anchor_ids, class_ids = order // num_classes, order % num_classes
    boxes = decode_boxes(box_codes[anchor_ids], anchors[anchor_ids])
    height, width = np.float32(input_size[0]), np.float32(input_size[1])
    scale = np.array([height, width, height, width], np.float32)
    normalised = np.clip(boxes / scale, 0, 1)
    # Classes are moved apart on the plane so one NMS pass never lets two classes suppress each other.
    shifted = normalised + class_ids[:, np.newaxis].astype(np.float32) * 2
    kept, scores = non_max_suppression(shifted, candidate_scores, nms, score_threshold, max_detections)
    return ImageDetections(
        boxes=(normalised[kept] * scale).astype(np.float32),
        scores=scores,
        classes=(class_ids[kept] + 1).astype(np.int32),
    )


def _scores_above(logits: np.ndarray, score_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices (ascending) and sigmoid scores (float32, as the graph computes them) of the flat logits whose
    score exceeds the threshold. Only candidates above it can survive NMS, so the sigmoid runs on logits within
    one unit of the threshold's logit and up (a margin far wider than float32 rounding), not on every (anchor,
    class) pair: a COCO model has 4.4 million of them at 512."""
    threshold = float(score_threshold)
    if threshold >= 1:
        return np.empty(0, np.intp), np.empty(0, np.float32)
    rough = (
        np.arange(logits.size) if threshold <= 0 else np.flatnonzero(logits > math.log(threshold / (1 - threshold)) - 1)
    )
    scores = np.float32(1) / (np.float32(1) + np.exp(-logits[rough]))
    keep = scores > np.float32(threshold)
    return rough[keep], scores[keep]
