"""Segmentation metrics with exact values on a hand-built three-class case."""

from __future__ import annotations

import numpy as np
import pytest

from effdet.data.masks import IGNORE
from effdet.seg_metrics import ConfusionAccumulator, confusion, segmentation_metrics

NAMES = ["background", "cat", "dog"]

# Ten pixels, the last two ignored (their predictions must not count).
LABELS = np.array([[0, 0, 0, 1, 1], [1, 2, 2, IGNORE, IGNORE]], dtype=np.uint8)
PREDICTIONS = np.array([[0, 0, 1, 1, 1], [2, 2, 0, 1, 2]], dtype=np.uint8)
# rows true, columns predicted: background 2 right, 1 as cat; cat 2 right, 1 as dog; dog 1 right, 1 as background
MATRIX = [[2, 1, 0], [0, 2, 1], [1, 0, 1]]


def test_confusion_counts_true_rows_against_predicted_columns_without_ignored_pixels() -> None:
    matrix = confusion(LABELS, PREDICTIONS, 3)
    assert matrix.dtype == np.int64
    np.testing.assert_array_equal(matrix, MATRIX)


def test_metrics_of_the_hand_built_case_are_exact() -> None:
    metrics = segmentation_metrics(confusion(LABELS, PREDICTIONS, 3), NAMES, num_images=1)
    assert metrics.per_class_iou == [2 / 4, 2 / 4, 1 / 3]  # TP / (TP + FP + FN)
    assert metrics.miou == pytest.approx(4 / 9, rel=1e-12)
    assert metrics.pixel_accuracy == 5 / 8
    assert (metrics.num_pixels, metrics.num_images) == (8, 1)
    assert metrics.class_names == NAMES


def test_a_class_absent_from_labels_and_predictions_is_none_and_left_out_of_miou() -> None:
    metrics = segmentation_metrics(confusion(LABELS, PREDICTIONS, 4), [*NAMES, "bird"], num_images=1)
    assert metrics.per_class_iou == [2 / 4, 2 / 4, 1 / 3, None]
    assert metrics.miou == pytest.approx(4 / 9, rel=1e-12)


def test_a_class_predicted_but_never_labelled_scores_zero() -> None:
    labels = np.array([[0, 0]], dtype=np.uint8)
    predictions = np.array([[0, 1]], dtype=np.uint8)
    metrics = segmentation_metrics(confusion(labels, predictions, 2), ["background", "cat"], num_images=1)
    assert metrics.per_class_iou == [0.5, 0.0]
    assert metrics.miou == 0.25


def test_all_ignored_pixels_give_zero_metrics_without_dividing_by_zero() -> None:
    labels = np.full((3, 3), IGNORE, dtype=np.uint8)
    metrics = segmentation_metrics(confusion(labels, np.zeros((3, 3), np.uint8), 3), NAMES, num_images=1)
    assert (metrics.miou, metrics.pixel_accuracy, metrics.num_pixels) == (0.0, 0.0, 0)
    assert metrics.per_class_iou == [None, None, None]


def test_confusion_does_not_overflow_uint8_class_ids() -> None:
    labels = np.full((1, 3), 200, dtype=np.uint8)
    matrix = confusion(labels, labels, 201)
    assert matrix[200, 200] == 3
    assert matrix.sum() == 3


def test_accumulator_over_two_images_equals_the_matrix_of_their_concatenation() -> None:
    other_labels = np.array([[2, 2, 1], [0, IGNORE, 1]], dtype=np.uint8)
    other_predictions = np.array([[2, 1, 1], [0, 0, 0]], dtype=np.uint8)
    accumulator = ConfusionAccumulator(NAMES)
    accumulator.add(LABELS, PREDICTIONS)
    accumulator.add(other_labels, other_predictions)
    joined = confusion(
        np.concatenate([LABELS.ravel(), other_labels.ravel()]),
        np.concatenate([PREDICTIONS.ravel(), other_predictions.ravel()]),
        3,
    )
    np.testing.assert_array_equal(accumulator.matrix, joined)
    metrics = accumulator.metrics()
    assert metrics == segmentation_metrics(joined, NAMES, num_images=2)
    assert metrics.num_images == 2


def test_confusion_rejects_mismatched_shapes_and_out_of_range_ids() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        confusion(LABELS, PREDICTIONS[:, :4], 3)
    with pytest.raises(ValueError, match=r"label lies outside 0\.\.1"):
        confusion(LABELS, PREDICTIONS, 2)
    with pytest.raises(ValueError, match=r"prediction lies outside 0\.\.1"):
        confusion(np.array([0, 1, IGNORE]), np.array([0, 2, 1]), 2)
    with pytest.raises(ValueError, match="one class name per row"):
        segmentation_metrics(confusion(LABELS, PREDICTIONS, 3), NAMES[:2], num_images=1)
