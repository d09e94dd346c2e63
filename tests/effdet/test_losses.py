"""Focal and Huber losses against hand-computed values; normalisation by positives."""

import math

import numpy as np
import pytest
import tensorflow as tf

from effdet.config import LossConfig
from effdet.losses import detection_loss, focal_loss, huber_loss, weight_decay_loss


def test_focal_loss_hand_computed() -> None:
    logit = 0.5
    p = 1 / (1 + math.exp(-logit))
    positive = 0.25 * (1 - p) ** 1.5 * -math.log(p)
    negative = 0.75 * p**1.5 * -math.log(1 - p)
    got = focal_loss(tf.constant([[logit, logit]]), tf.constant([[1.0, 0.0]]), alpha=0.25, gamma=1.5)
    np.testing.assert_allclose(got.numpy(), [[positive, negative]], rtol=1e-6)


def test_focal_loss_with_label_smoothing_smooths_only_cross_entropy() -> None:
    logit, smoothing = -1.0, 0.1
    p = 1 / (1 + math.exp(-logit))
    target = 1.0 * (1 - smoothing) + 0.5 * smoothing
    cross_entropy = -(target * math.log(p) + (1 - target) * math.log(1 - p))
    expected = 0.25 * (1 - p) ** 2.0 * cross_entropy
    got = focal_loss(tf.constant([logit]), tf.constant([1.0]), alpha=0.25, gamma=2.0, label_smoothing=smoothing)
    np.testing.assert_allclose(got.numpy(), [expected], rtol=1e-6)


def test_huber_loss_hand_computed() -> None:
    got = huber_loss(tf.constant([0.05, 0.3, -0.5]), tf.constant([0.0, 0.0, 0.0]), delta=0.1)
    np.testing.assert_allclose(got.numpy(), [0.5 * 0.05**2, 0.1 * (0.3 - 0.05), 0.1 * (0.5 - 0.05)], rtol=1e-6)


def test_detection_loss_normalises_by_positives_plus_one() -> None:
    config = LossConfig()
    cls_logits = tf.constant([[[0.0, 0.0], [1.0, -1.0], [-2.0, 0.5]]])
    box_outputs = tf.constant([[[0.2, 0.0, 0.0, 0.0], [0.0, 0.05, 0.0, 0.0], [9.0, 9.0, 9.0, 9.0]]])
    cls_targets = tf.constant([[1, 0, -1]])  # positive of class 1, background, ignored
    box_targets = tf.constant([[[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])
    terms = detection_loss(cls_logits, box_outputs, cls_targets, box_targets, config)

    one_hot = tf.constant([[[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    elementwise = focal_loss(cls_logits, one_hot, 0.25, 1.5).numpy()
    expected_cls = (elementwise[0, 0].sum() + elementwise[0, 1].sum()) / 2.0  # ignored row left out
    expected_box = (0.1 * (0.2 - 0.05)) / (2.0 * 4)  # only the positive anchor's box counts
    assert float(terms.num_positives) == 1.0
    np.testing.assert_allclose(float(terms.cls_loss), expected_cls, rtol=1e-6)
    np.testing.assert_allclose(float(terms.box_loss), expected_box, rtol=1e-6)
    np.testing.assert_allclose(float(terms.total), expected_cls + 50.0 * expected_box, rtol=1e-6)


def test_weight_decay_counts_kernels_only() -> None:
    import keras

    layer = keras.layers.Conv2D(2, 1, name="conv")
    layer.build((None, 4, 4, 3))
    layer.kernel.assign(np.ones((1, 1, 3, 2), np.float32))
    layer.bias.assign(np.full((2,), 5.0, np.float32))
    got = weight_decay_loss(layer.variables, weight_decay=0.1)
    assert float(got) == pytest.approx(0.1 * 6 / 2)
