"""Detection losses: sigmoid focal loss for classes, Huber loss for boxes, L2 weight decay on kernels.

Focal loss (Lin et al., ICCV 2017, equation 5): FL = -alpha_t (1 - p_t)**gamma log(p_t), one sigmoid per
class (no background channel). Box loss: Huber with threshold delta on [ty, tx, th, tw] of positive anchors.
As in automl, the class loss is divided by (positives + 1) and the box loss by 4 (positives + 1);
total = class + box_loss_weight * box (+ weight decay, added by the trainer).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import keras
import tensorflow as tf

from effdet.anchors import IGNORE
from effdet.config import LossConfig


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


@dataclass(frozen=True)
class LossTerms:
    """The loss of one batch: total = cls_loss + box_loss_weight * box_loss (scalars)."""

    total: tf.Tensor
    cls_loss: tf.Tensor
    box_loss: tf.Tensor
    num_positives: tf.Tensor


def detection_loss(
    cls_logits: tf.Tensor,
    box_outputs: tf.Tensor,
    cls_targets: tf.Tensor,
    box_targets: tf.Tensor,
    config: LossConfig,
) -> LossTerms:
    """Focal + Huber loss of a batch.

    cls_logits: float [batch, anchors, num_classes]; box_outputs: float [batch, anchors, 4] ([ty, tx, th, tw]);
    cls_targets: int [batch, anchors] (1-based class, 0 background, -1 ignored); box_targets like box_outputs.
    """
    cls_logits = tf.cast(cls_logits, tf.float32)
    box_outputs = tf.cast(box_outputs, tf.float32)
    cls_targets = tf.cast(cls_targets, tf.int32)
    num_classes = tf.shape(cls_logits)[-1]
    positive = cls_targets > 0
    normaliser = tf.reduce_sum(tf.cast(positive, tf.float32)) + 1.0
    one_hot = tf.one_hot(cls_targets - 1, num_classes)  # background and ignored rows are all zero
    per_class = focal_loss(cls_logits, one_hot, config.alpha, config.gamma, config.label_smoothing)
    counted = tf.cast(cls_targets != IGNORE, tf.float32)[..., tf.newaxis]
    cls_loss = tf.reduce_sum(per_class * counted) / normaliser
    per_coord = huber_loss(box_outputs, tf.cast(box_targets, tf.float32), config.delta)
    box_loss = tf.reduce_sum(per_coord * tf.cast(positive, tf.float32)[..., tf.newaxis]) / (normaliser * 4.0)
    total = cls_loss + config.box_loss_weight * box_loss
    return LossTerms(total=total, cls_loss=cls_loss, box_loss=box_loss, num_positives=normaliser - 1.0)


def weight_decay_loss(variables: Iterable[keras.Variable], weight_decay: float) -> tf.Tensor:
    """weight_decay * sum(||k||^2 / 2) over convolution kernels only (not biases, BN or fusion weights)."""
    kernels = [tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in variables if v.path.endswith("kernel")]
    if not kernels:
        return tf.constant(0.0)
    return weight_decay * tf.add_n(kernels)
