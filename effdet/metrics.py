"""What an evaluation reports, as plain pydantic documents (no TensorFlow: the API shows them): COCO box metrics
with per-class AP and PR curves, a segmentation head's mIoU, and an evaluation's full result with the counts at one
score threshold."""

from __future__ import annotations

from pydantic import BaseModel, Field

from effdet.confusion import Confusion
from effdet.seg_metrics import SegmentationMetrics

PR_CURVE_POINTS = 101
"""Recall points of a per-class precision/recall curve (COCO's own recall grid)."""


class ClassMetrics(BaseModel):
    """One class: AP over IoU 0.5:0.95, AP at IoU 0.5, and its precision/recall curve at IoU 0.5.

    None where the class has no ground truth in the evaluated images.
    """

    ap: float | None
    ap50: float | None
    pr_curve: list[tuple[float, float]]
    """(recall, precision) points, recall ascending; empty without ground truth."""


class Metrics(BaseModel):
    """COCO box metrics (a value is None where the ground truth has no box in that size range, and every value is
    None for a model without a detection head), with the segmentation head's metrics when the model has one."""

    ap: float | None
    ap50: float | None
    ap75: float | None
    ap_small: float | None
    ap_medium: float | None
    ap_large: float | None
    ar100: float | None
    num_images: int
    per_class: dict[str, ClassMetrics]
    segmentation: SegmentationMetrics | None = Field(
        None, description="mIoU, per-class IoU and pixel accuracy of the segmentation head; None without one"
    )

    @classmethod
    def segmentation_only(cls, segmentation: SegmentationMetrics) -> Metrics:
        """The metrics of a model that only segments: no box metrics, its segmentation head's."""
        return cls(
            ap=None,
            ap50=None,
            ap75=None,
            ap_small=None,
            ap_medium=None,
            ap_large=None,
            ar100=None,
            num_images=segmentation.num_images,
            per_class={},
            segmentation=segmentation,
        )


class EvaluationReport(BaseModel):
    """A model run over a dataset's split in one exported format: COCO metrics over every detection the format
    makes, and what it gets right and wrong at the chosen score threshold."""

    metrics: Metrics
    confusion: Confusion
    format: str
    split: str
    ms_per_image: float = Field(description="mean inference time per image on the evaluating worker")
    detection_threshold: float = Field(
        description="the lowest score the format reports (AP is computed over the detections above it)"
    )
    ignored_classes: list[str] = Field(
        default_factory=list, description="model classes the dataset does not have: their detections are left out"
    )
    label_errors: dict[str, int] = Field(
        default_factory=dict, description="likely label errors found with confidence >= 0.5, by kind"
    )
