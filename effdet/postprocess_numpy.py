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

import heapq
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


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one box [4] with boxes [m, 4], corners in any order, 0 where either box has no area (TF's IOU)."""
    low = np.minimum(box[:2], box[2:])
    high = np.maximum(box[:2], box[2:])
    others_low = np.minimum(others[:, :2], others[:, 2:])
    others_high = np.maximum(others[:, :2], others[:, 2:])
    area = np.prod(high - low)
    areas = np.prod(others_high - others_low, axis=1)
    overlap = np.prod(np.maximum(np.minimum(high, others_high) - np.maximum(low, others_low), 0), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = overlap / (area + areas - overlap)
    return np.where((area > 0) & (areas > 0), iou, np.float32(0)).astype(np.float32)


def non_max_suppression(
    boxes: np.ndarray, scores: np.ndarray, nms: NmsConfig, score_threshold: float, max_output: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the kept boxes and their (possibly decayed) scores, in the order selected."""
    iou_threshold = np.float32(nms.resolved_iou_thresh)
    sigma = nms.resolved_sigma
    soft = sigma > 0
    decay = np.float32(-0.5 / sigma) if soft else np.float32(0)
    threshold = np.float32(score_threshold)
    queue = [(-float(s), int(i), 0) for i, s in enumerate(scores) if s > threshold]
    heapq.heapify(queue)
    kept: list[int] = []
    kept_scores: list[np.float32] = []
    kept_boxes = np.empty((max_output, 4), np.float32)
    while len(kept) < max_output and queue:
        negative, index, begin = heapq.heappop(queue)
        original = np.float32(-negative)
        score = original
        suppressed = False
        if begin < len(kept):
            ious = _iou(boxes[index], kept_boxes[begin : len(kept)])[::-1]
            for iou in ious:
                if soft:
                    score = np.float32(score * np.exp(decay * iou * iou))
                elif iou > iou_threshold:
                    suppressed = True
                    break
                if score <= threshold:
                    break
        if suppressed:
            continue
        if score == original:
            kept_boxes[len(kept)] = boxes[index]
            kept.append(index)
            kept_scores.append(score)
        elif score > threshold:
            heapq.heappush(queue, (-float(score), index, len(kept)))
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
    logits = class_logits.astype(np.float32)
    num_classes = logits.shape[1]
    flat = (np.float32(1) / (np.float32(1) + np.exp(-logits))).reshape(-1)
    top_k = min(nms.resolved_max_inputs, flat.size)
    # Only candidates above the threshold can survive, so the sort can skip the rest.
    above = np.flatnonzero(flat > np.float32(score_threshold))
    order = above[np.argsort(-flat[above], kind="stable")][:top_k]
    anchor_ids, class_ids = order // num_classes, order % num_classes
    boxes = decode_boxes(box_codes[anchor_ids], anchors[anchor_ids])
    height, width = np.float32(input_size[0]), np.float32(input_size[1])
    scale = np.array([height, width, height, width], np.float32)
    normalised = np.clip(boxes / scale, 0, 1)
    # Classes are moved apart on the plane so one NMS pass never lets two classes suppress each other.
    shifted = normalised + class_ids[:, np.newaxis].astype(np.float32) * 2
    kept, scores = non_max_suppression(shifted, flat[order], nms, score_threshold, max_detections)
    return ImageDetections(
        boxes=(normalised[kept] * scale).astype(np.float32),
        scores=scores,
        classes=(class_ids[kept] + 1).astype(np.int32),
    )
