"""Semantic segmentation metrics from a pixel confusion matrix, in numpy only (the API imports this module).

Pascal VOC's convention: IoU_c = TP / (TP + FP + FN) per class, background included, and mIoU the mean over
the classes that appear in the labels or the predictions. Pixels labelled IGNORE (255) are not counted.
Evaluation runs image by image at each image's original resolution, so matrices are summed, never averaged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

from effdet.data.masks import IGNORE


class SegmentationMetrics(BaseModel):
    """mIoU, pixel accuracy and per-class IoU over every non-ignored pixel of the evaluated images."""

    miou: float = Field(description="mean IoU over the classes present in labels or predictions, background included")
    pixel_accuracy: float = Field(description="correctly classified pixels / all non-ignored pixels")
    per_class_iou: list[float | None] = Field(
        description="IoU by class id (0 = background); None for a class neither labelled nor predicted"
    )
    class_names: list[str] = Field(description="the name of each class id, background first")
    num_images: int
    num_pixels: int = Field(description="non-ignored pixels counted")


def confusion(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 [num_classes, num_classes] pixel counts, rows the true class and columns the predicted one.

    labels: integer [...] class ids, IGNORE where a pixel does not count; predictions: integer, the same shape.
    """
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {list(labels.shape)} and predictions {list(predictions.shape)} differ in shape")
    if not 0 < num_classes <= IGNORE:
        raise ValueError(f"num_classes={num_classes} must lie in 1..{IGNORE} (id {IGNORE} means ignore)")
    if not (np.issubdtype(labels.dtype, np.integer) and np.issubdtype(predictions.dtype, np.integer)):
        raise ValueError(f"labels ({labels.dtype}) and predictions ({predictions.dtype}) must be integer class ids")
    counted = labels != IGNORE
    true = labels[counted].astype(np.int64)
    predicted = predictions[counted].astype(np.int64)
    for name, values in (("label", true), ("prediction", predicted)):
        if values.size and not 0 <= values.min() <= values.max() < num_classes:
            raise ValueError(f"a {name} lies outside 0..{num_classes - 1}: {values.min()}..{values.max()}")
    counts = np.bincount(true * num_classes + predicted, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def segmentation_metrics(matrix: np.ndarray, class_names: Sequence[str], num_images: int) -> SegmentationMetrics:
    """The metrics of a confusion matrix (rows true, columns predicted) whose class ids name `class_names`.

    A class with no labelled and no predicted pixel has IoU None and is left out of the mIoU. When no pixel is
    counted at all (every label ignored), mIoU and pixel accuracy are 0 rather than a division by zero.
    """
    if matrix.shape != (len(class_names), len(class_names)):
        raise ValueError(f"a {list(matrix.shape)} matrix needs one class name per row, got {len(class_names)}")
    true_positives = np.diag(matrix)
    unions = matrix.sum(axis=0) + matrix.sum(axis=1) - true_positives
    per_class = [float(tp / union) if union else None for tp, union in zip(true_positives, unions, strict=True)]
    present = [iou for iou in per_class if iou is not None]
    total = int(matrix.sum())
    return SegmentationMetrics(
        miou=sum(present) / len(present) if present else 0.0,
        pixel_accuracy=float(true_positives.sum() / total) if total else 0.0,
        per_class_iou=per_class,
        class_names=list(class_names),
        num_images=num_images,
        num_pixels=total,
    )


class ConfusionAccumulator:
    """Sums the confusion matrices of images evaluated one at a time, then reports their metrics."""

    def __init__(self, class_names: Sequence[str]) -> None:
        """class_names: one per class id, background (id 0) first."""
        self.class_names = list(class_names)
        self.matrix = np.zeros((len(self.class_names), len(self.class_names)), dtype=np.int64)
        self.num_images = 0

    def add(self, labels: np.ndarray, predictions: np.ndarray) -> None:
        """Count one image: labels uint8 [H, W] (IGNORE where it does not count), predictions [H, W] class ids."""
        self.matrix += confusion(labels, predictions, len(self.class_names))
        self.num_images += 1

    def metrics(self) -> SegmentationMetrics:
        return segmentation_metrics(self.matrix, self.class_names, self.num_images)
