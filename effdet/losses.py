"""Detection losses: sigmoid focal loss for classes, Huber and optional IoU losses for boxes, L2 weight decay.

Focal loss (Lin et al., ICCV 2017, equation 5): FL = -alpha_t (1 - p_t)**gamma log(p_t), one sigmoid per
class (no background channel). Box loss: Huber with threshold delta on [ty, tx, th, tw] of positive anchors.
IoU box loss (automl's iou_loss_type): 1 - IoU, GIoU (Rezatofighi et al., CVPR 2019), DIoU or CIoU (Zheng et
al., AAAI 2020, equations 6 and 9) between the decoded predicted and target boxes of positive anchors.
As in automl, the class loss is divided by the normaliser N = positives + 1 and the box losses by 4 N;
total = class + box_loss_weight * box + iou_loss_weight * box_iou (+ weight decay, added by the trainer).
With positives_momentum, N is a moving average of positives + 1 (`PositivesNormaliser`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

import keras
import tensorflow as tf

from effdet.anchors import IGNORE, decode_boxes
from effdet.config import IouLossType, LossConfig
from effdet.data.masks import IGNORE as MASK_IGNORE


def focal_loss(
    logits: tf.Tensor, targets: tf.Tensor, alpha: float, gamma: float, label_smoothing: float = 0.0
) -> tf.Tensor:
    """Elementwise sigmoid focal loss.

    logits, targets: float [..., num_classes]; targets are 0/1 (one-hot, all zero for background).
    Label smoothing moves targets towards 0.5 in the cross-entropy term only (automl's formulation).
    """
    targets = tf.cast(targets, logits.dtype)
    prob = tf.sigmoid(logits)
    p_t = targets * prob + (1 - targets) * (1 - prob)
    alpha_t = targets * alpha + (1 - targets) * (1 - alpha)
    modulator = tf.pow(1.0 - p_t, gamma)
    smoothed = targets * (1.0 - label_smoothing) + 0.5 * label_smoothing
    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=smoothed, logits=logits)
    return alpha_t * modulator * cross_entropy


def huber_loss(predictions: tf.Tensor, targets: tf.Tensor, delta: float) -> tf.Tensor:
    """Elementwise Huber loss: 0.5 x**2 for |x| <= delta, else delta (|x| - 0.5 delta)."""
    error = tf.abs(predictions - targets)
    quadratic = tf.minimum(error, delta)
    return 0.5 * quadratic**2 + delta * (error - quadratic)


class _Corners(NamedTuple):
    """Boxes as their four coordinates, each float [...] in pixels."""

    ymin: tf.Tensor
    xmin: tf.Tensor
    ymax: tf.Tensor
    xmax: tf.Tensor

    @classmethod
    def of(cls, boxes: tf.Tensor) -> _Corners:
        """Split float [..., 4] [ymin, xmin, ymax, xmax] boxes."""
        return cls(*tf.unstack(tf.cast(boxes, tf.float32), num=4, axis=-1))

    @property
    def height(self) -> tf.Tensor:
        return tf.maximum(self.ymax - self.ymin, 0.0)

    @property
    def width(self) -> tf.Tensor:
        return tf.maximum(self.xmax - self.xmin, 0.0)


def _enclosing(a: _Corners, b: _Corners) -> _Corners:
    """The smallest box that covers both."""
    return _Corners(
        tf.minimum(a.ymin, b.ymin), tf.minimum(a.xmin, b.xmin), tf.maximum(a.ymax, b.ymax), tf.maximum(a.xmax, b.xmax)
    )


def _iou_and_union(a: _Corners, b: _Corners) -> tuple[tf.Tensor, tf.Tensor]:
    """IoU of paired boxes (0 where the union is empty) and the union's area."""
    inter_h = tf.maximum(tf.minimum(a.ymax, b.ymax) - tf.maximum(a.ymin, b.ymin), 0.0)
    inter_w = tf.maximum(tf.minimum(a.xmax, b.xmax) - tf.maximum(a.xmin, b.xmin), 0.0)
    inter = inter_h * inter_w
    union = a.height * a.width + b.height * b.width - inter
    return tf.math.divide_no_nan(inter, union), union


def _no_penalty(predicted: _Corners, target: _Corners, iou: tf.Tensor, union: tf.Tensor) -> tf.Tensor:
    return tf.zeros_like(iou)


def _giou_penalty(predicted: _Corners, target: _Corners, iou: tf.Tensor, union: tf.Tensor) -> tf.Tensor:
    """GIoU: the share of the enclosing box that neither box covers."""
    hull = _enclosing(predicted, target)
    hull_area = hull.height * hull.width
    return tf.math.divide_no_nan(hull_area - union, hull_area)


def _diou_penalty(predicted: _Corners, target: _Corners, iou: tf.Tensor, union: tf.Tensor) -> tf.Tensor:
    """DIoU: squared distance of the centres over the squared diagonal of the enclosing box."""
    hull = _enclosing(predicted, target)
    dy = (predicted.ymin + predicted.ymax - target.ymin - target.ymax) / 2
    dx = (predicted.xmin + predicted.xmax - target.xmin - target.xmax) / 2
    return tf.math.divide_no_nan(dy**2 + dx**2, hull.height**2 + hull.width**2)


def _ciou_penalty(predicted: _Corners, target: _Corners, iou: tf.Tensor, union: tf.Tensor) -> tf.Tensor:
    """CIoU: DIoU's penalty plus alpha v, v = (4 / pi**2) (atan(w_t / h_t) - atan(w / h))**2 measuring the aspect
    mismatch; the trade-off alpha = v / (1 - IoU + v) is held constant in the gradient, as in the paper."""
    aspect = tf.atan(tf.math.divide_no_nan(target.width, target.height)) - tf.atan(
        tf.math.divide_no_nan(predicted.width, predicted.height)
    )
    v = 4.0 / math.pi**2 * aspect**2
    alpha = tf.stop_gradient(tf.math.divide_no_nan(v, 1.0 - iou + v))
    return _diou_penalty(predicted, target, iou, union) + alpha * v


_Penalty = Callable[[_Corners, _Corners, tf.Tensor, tf.Tensor], tf.Tensor]
_PENALTIES: dict[IouLossType, _Penalty] = {
    "iou": _no_penalty,
    "giou": _giou_penalty,
    "diou": _diou_penalty,
    "ciou": _ciou_penalty,
}


def iou_loss(predicted: tf.Tensor, target: tf.Tensor, kind: IouLossType) -> tf.Tensor:
    """1 - IoU, GIoU, DIoU or CIoU of paired boxes (float [..., 4] [ymin, xmin, ymax, xmax]) -> float [...].

    Identical boxes give 0; disjoint ones 1 with 'iou' and more than 1 with the others, whose penalty keeps a
    gradient that pulls the boxes together where IoU has none.
    """
    predicted_corners, target_corners = _Corners.of(predicted), _Corners.of(target)
    iou, union = _iou_and_union(predicted_corners, target_corners)
    return 1.0 - iou + _PENALTIES[kind](predicted_corners, target_corners, iou, union)


@dataclass(frozen=True)
class LossTerms:
    """The loss of one batch: total = cls_loss + box_loss_weight * box_loss + iou_loss_weight * box_iou_loss
    (scalars; box_iou_loss is 0 without iou_loss_type)."""

    total: tf.Tensor
    cls_loss: tf.Tensor
    box_loss: tf.Tensor
    box_iou_loss: tf.Tensor
    num_positives: tf.Tensor


def count_positives(cls_targets: tf.Tensor) -> tf.Tensor:
    """Positive anchors in a batch: cls_targets int [batch, anchors] (1-based class, 0 background, -1 ignored)
    -> float32 scalar."""
    return tf.reduce_sum(tf.cast(cls_targets > 0, tf.float32))


class PositivesNormaliser(tf.Module):
    """The normaliser N of the losses: positives + 1 in the batch, or as automl's positives_momentum asks.

    momentum m > 0: a moving average v <- m v + (1 - m) (positives + 1) started at 0 and used once updated, with
    no bias correction (automl's TF2 trainer: the first steps' losses are up to 1 / (1 - m) larger), which
    steadies the loss scale across batches; m < 0: the mean of positives + 1 over the replicas; None or 0: the
    batch's own. The average is a variable, saved with the training checkpoint.
    """

    def __init__(self, momentum: float | None) -> None:
        super().__init__(name="positives")
        self.momentum = float(momentum or 0.0)
        self.average: tf.Variable | None = None
        if self.momentum > 0:
            self.average = tf.Variable(
                0.0,
                trainable=False,
                name="moving_normaliser",
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.MEAN,
            )

    def __call__(self, num_positives: tf.Tensor) -> tf.Tensor:
        """N for a batch with num_positives (float32 scalar); updates the moving average when there is one."""
        count = tf.cast(num_positives, tf.float32) + 1.0
        if self.average is not None:
            updated = self.momentum * self.average + (1.0 - self.momentum) * count
            self.average.assign(updated)
            return updated
        replica = tf.distribute.get_replica_context()
        if self.momentum < 0 and replica is not None and replica.num_replicas_in_sync > 1:
            return replica.all_reduce(tf.distribute.ReduceOp.MEAN, count)
        return count


def box_iou_loss(
    box_outputs: tf.Tensor, box_targets: tf.Tensor, positive: tf.Tensor, anchors: tf.Tensor, kind: IouLossType
) -> tf.Tensor:
    """Sum over positive anchors of `iou_loss` between the decoded predicted and target boxes.

    box_outputs, box_targets: float [batch, anchors, 4] ([ty, tx, th, tw]); positive: bool [batch, anchors];
    anchors: float [anchors, 4] [ymin, xmin, ymax, xmax] in input pixels. Other anchors decode as their own
    anchor on both sides (loss 0, no gradient), so a wild background output cannot overflow into a NaN.
    """
    chosen = positive[..., tf.newaxis]
    predicted = decode_boxes(tf.where(chosen, box_outputs, 0.0), anchors)
    target = decode_boxes(tf.where(chosen, tf.cast(box_targets, tf.float32), 0.0), anchors)
    return tf.reduce_sum(iou_loss(predicted, target, kind) * tf.cast(positive, tf.float32))


def detection_loss(
    cls_logits: tf.Tensor,
    box_outputs: tf.Tensor,
    cls_targets: tf.Tensor,
    box_targets: tf.Tensor,
    config: LossConfig,
    *,
    anchors: tf.Tensor | None = None,
    normaliser: tf.Tensor | None = None,
) -> LossTerms:
    """Focal + Huber (+ IoU) loss of a batch.

    cls_logits: float [batch, anchors, num_classes]; box_outputs: float [batch, anchors, 4] ([ty, tx, th, tw]);
    cls_targets: int [batch, anchors] (1-based class, 0 background, -1 ignored); box_targets like box_outputs.
    anchors: float32 [anchors, 4] [ymin, xmin, ymax, xmax], needed with config.iou_loss_type to decode boxes.
    normaliser: N (float32 scalar, e.g. from `PositivesNormaliser`); default positives + 1.
    """
    cls_logits = tf.cast(cls_logits, tf.float32)
    box_outputs = tf.cast(box_outputs, tf.float32)
    cls_targets = tf.cast(cls_targets, tf.int32)
    num_classes = tf.shape(cls_logits)[-1]
    positive = cls_targets > 0
    num_positives = count_positives(cls_targets)
    if normaliser is None:
        normaliser = num_positives + 1.0
    one_hot = tf.one_hot(cls_targets - 1, num_classes)  # background and ignored rows are all zero
    per_class = focal_loss(cls_logits, one_hot, config.alpha, config.gamma, config.label_smoothing)
    counted = tf.cast(cls_targets != IGNORE, tf.float32)[..., tf.newaxis]
    cls_loss = tf.reduce_sum(per_class * counted) / normaliser
    per_coord = huber_loss(box_outputs, tf.cast(box_targets, tf.float32), config.delta)
    box_loss = tf.reduce_sum(per_coord * tf.cast(positive, tf.float32)[..., tf.newaxis]) / (normaliser * 4.0)
    iou_term = tf.constant(0.0)
    if config.iou_loss_type is not None:
        if anchors is None:
            raise ValueError(f"iou_loss_type {config.iou_loss_type!r} decodes boxes: pass the anchors")
        iou_term = box_iou_loss(box_outputs, box_targets, positive, anchors, config.iou_loss_type) / (normaliser * 4.0)
    total = cls_loss + config.box_loss_weight * box_loss + config.iou_loss_weight * iou_term
    return LossTerms(
        total=total, cls_loss=cls_loss, box_loss=box_loss, box_iou_loss=iou_term, num_positives=num_positives
    )


def weight_decay_loss(variables: Iterable[keras.Variable], weight_decay: float) -> tf.Tensor:
    """weight_decay * sum(||k||^2 / 2) over convolution kernels only (not biases, BN or fusion weights)."""
    kernels = [tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in variables if v.path.endswith("kernel")]
    if not kernels:
        return tf.constant(0.0)
    return weight_decay * tf.add_n(kernels)


def segmentation_loss(logits: tf.Tensor, labels: tf.Tensor, ignore: int = MASK_IGNORE) -> tf.Tensor:
    """Softmax cross-entropy of the segmentation logits, averaged over the labelled pixels (0 when none is).

    logits: float [batch, h, w, seg_num_classes]; labels: integer [batch, h, w], `ignore` where a pixel does not
    count (padding, void borders, images without a mask). automl's training sums the per-pixel losses instead,
    which makes the detection terms' weight depend on the label size; its demo and tests take this mean.
    """
    valid = tf.not_equal(tf.cast(labels, tf.int32), ignore)
    safe = tf.where(valid, tf.cast(labels, tf.int32), 0)
    per_pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=tf.cast(logits, tf.float32))
    total = tf.reduce_sum(tf.where(valid, per_pixel, 0.0))
    return total / tf.maximum(tf.reduce_sum(tf.cast(valid, tf.float32)), 1.0)
