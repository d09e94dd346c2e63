"""Focal, Huber and IoU losses against hand-computed values; normalisation by positives and its moving average."""

import math

import numpy as np
import pytest
import tensorflow as tf

from effdet.config import IouLossType, LossConfig
from effdet.losses import (
    PositivesNormaliser,
    detection_loss,
    focal_loss,
    huber_loss,
    iou_loss,
    segmentation_loss,
    weight_decay_loss,
)


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


SQUARE = [0.0, 0.0, 2.0, 2.0]


@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
def test_iou_losses_are_zero_for_identical_boxes(kind: IouLossType) -> None:
    boxes = tf.constant([SQUARE, [10.0, 20.0, 30.0, 60.0]])
    np.testing.assert_allclose(iou_loss(boxes, boxes, kind).numpy(), [0.0, 0.0], atol=1e-6)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("iou", 1.0),  # no overlap and no gradient to close the gap
        ("giou", 1.0 + (12 - 8) / 12),  # hull [0, 0, 2, 6]: a third of it uncovered
        ("diou", 1.0 + 4**2 / (2**2 + 6**2)),  # centres 4 apart, hull diagonal sqrt(40)
        ("ciou", 1.0 + 4**2 / (2**2 + 6**2)),  # same aspect ratio: no aspect term
    ],
)
def test_iou_losses_of_disjoint_boxes(kind: IouLossType, expected: float) -> None:
    got = iou_loss(tf.constant([SQUARE]), tf.constant([[0.0, 4.0, 2.0, 6.0]]), kind)
    np.testing.assert_allclose(got.numpy(), [expected], rtol=1e-6)


def test_giou_of_overlapping_boxes_adds_the_uncovered_share_of_the_hull() -> None:
    got = iou_loss(tf.constant([SQUARE]), tf.constant([[1.0, 1.0, 3.0, 3.0]]), "giou")
    np.testing.assert_allclose(got.numpy(), [1 - 1 / 7 + 2 / 9], rtol=1e-6)


def test_ciou_adds_the_aspect_ratio_term() -> None:
    predicted, target = tf.constant([SQUARE]), tf.constant([[0.0, 0.0, 2.0, 4.0]])  # IoU 4 / 8
    v = 4 / math.pi**2 * (math.atan(4 / 2) - math.atan(1.0)) ** 2
    alpha = v / (1 - 0.5 + v)
    diou = 1 - 0.5 + 1 / (2**2 + 4**2)  # centres 1 apart, hull 2 x 4
    np.testing.assert_allclose(iou_loss(predicted, target, "diou").numpy(), [diou], rtol=1e-6)
    np.testing.assert_allclose(iou_loss(predicted, target, "ciou").numpy(), [diou + alpha * v], rtol=1e-6)


@pytest.mark.parametrize(("kind", "pulls"), [("iou", False), ("giou", True), ("diou", True), ("ciou", True)])
def test_only_iou_leaves_disjoint_boxes_without_a_gradient(kind: IouLossType, pulls: bool) -> None:
    predicted = tf.Variable([SQUARE])
    with tf.GradientTape() as tape:
        loss = iou_loss(predicted, tf.constant([[0.0, 4.0, 2.0, 6.0]]), kind)
    gradient = tape.gradient(loss, predicted).numpy()
    assert np.all(np.isfinite(gradient))
    assert bool(np.any(gradient != 0)) == pulls


def _one_positive_batch() -> dict[str, tf.Tensor]:
    """Two anchors: a positive whose target is the anchor itself and whose prediction is half its size (IoU 1/4),
    and a background anchor with an output large enough to overflow exp()."""
    return {
        "cls_logits": tf.constant([[[0.5], [-1.0]]]),
        "box_outputs": tf.constant([[[0.0, 0.0, math.log(0.5), math.log(0.5)], [0.0, 0.0, 500.0, 500.0]]]),
        "cls_targets": tf.constant([[1, 0]]),
        "box_targets": tf.zeros([1, 2, 4]),
        "anchors": tf.constant([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]]),
    }


def test_iou_loss_is_added_to_the_total_with_its_weight() -> None:
    batch = _one_positive_batch()
    anchors = batch.pop("anchors")
    plain = detection_loss(**batch, config=LossConfig())
    assert float(plain.box_iou_loss) == 0.0
    weighted = detection_loss(**batch, config=LossConfig(iou_loss_type="iou", iou_loss_weight=2.0), anchors=anchors)
    expected = (1 - 0.25) / (2.0 * 4)  # one positive: normaliser 2, divided by 4 as the Huber box loss
    np.testing.assert_allclose(float(weighted.box_iou_loss), expected, rtol=1e-6)
    np.testing.assert_allclose(float(weighted.total), float(plain.total) + 2.0 * expected, rtol=1e-6)
    np.testing.assert_allclose(float(weighted.box_loss), float(plain.box_loss), rtol=1e-6)


def test_iou_loss_ignores_background_outputs_even_when_they_overflow() -> None:
    batch = _one_positive_batch()
    anchors = batch.pop("anchors")
    outputs = tf.Variable(batch.pop("box_outputs"))
    with tf.GradientTape() as tape:
        terms = detection_loss(box_outputs=outputs, **batch, config=LossConfig(iou_loss_type="ciou"), anchors=anchors)
    gradient = tape.gradient(terms.box_iou_loss, outputs).numpy()
    assert np.isfinite(float(terms.total))
    assert np.all(np.isfinite(gradient))
    assert np.all(gradient[0, 1] == 0)  # the background anchor takes no part
    assert np.any(gradient[0, 0] != 0)


def test_iou_loss_needs_the_anchors() -> None:
    batch = _one_positive_batch()
    batch.pop("anchors")
    with pytest.raises(ValueError, match="pass the anchors"):
        detection_loss(**batch, config=LossConfig(iou_loss_type="giou"))


def test_a_given_normaliser_replaces_positives_plus_one() -> None:
    batch = _one_positive_batch()
    batch.pop("anchors")
    default = detection_loss(**batch, config=LossConfig())  # normaliser 1 positive + 1 = 2
    halved = detection_loss(**batch, config=LossConfig(), normaliser=tf.constant(4.0))
    np.testing.assert_allclose(float(halved.cls_loss), float(default.cls_loss) / 2, rtol=1e-6)
    np.testing.assert_allclose(float(halved.box_loss), float(default.box_loss) / 2, rtol=1e-6)
    assert float(halved.num_positives) == 1.0


def test_positives_momentum_normalises_by_a_moving_average_from_zero() -> None:
    moving = PositivesNormaliser(0.9)
    got = [float(moving(tf.constant(n))) for n in (9.0, 19.0, 19.0)]
    # v <- 0.9 v + 0.1 (positives + 1), from 0 and without bias correction, as automl's TF2 trainer
    np.testing.assert_allclose(got, [1.0, 0.9 * 1.0 + 2.0, 0.9 * 2.9 + 2.0], rtol=1e-6)
    assert moving.average is not None
    np.testing.assert_allclose(float(moving.average), got[-1], rtol=1e-6)


@pytest.mark.parametrize("momentum", [None, 0.0, -1.0])
def test_without_positive_momentum_the_normaliser_is_the_batch_count_on_one_replica(momentum: float | None) -> None:
    plain = PositivesNormaliser(momentum)
    assert plain.average is None
    assert [float(plain(tf.constant(n))) for n in (9.0, 19.0)] == [10.0, 20.0]


def test_segmentation_loss_is_the_mean_over_labelled_pixels() -> None:
    logits = tf.constant([[[[2.0, 0.0], [0.0, 2.0]], [[0.0, 0.0], [5.0, -5.0]]]])  # [1, 2, 2, 2]
    labels = tf.constant([[[0, 1], [255, 255]]], tf.uint8)
    expected = -np.log(np.exp(2.0) / (np.exp(2.0) + 1.0))  # both labelled pixels are right with margin 2
    assert float(segmentation_loss(logits, labels)) == pytest.approx(expected, rel=1e-6)
    assert float(segmentation_loss(logits, tf.fill([1, 2, 2], tf.constant(255, tf.uint8)))) == 0.0
