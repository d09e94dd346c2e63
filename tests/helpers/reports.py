"""Conversion reports as the worker stores them, for dataset rows made without converting anything."""

from __future__ import annotations

from effdet.data.convert import ConversionReport, SplitSummary
from effdet.data.stats import compute_stats


def one_class_report(val_images: int = 0) -> ConversionReport:
    """A ready dataset's report: one class, 'raccoon', 9 training images with 10 boxes (and val_images in val)."""
    splits = {"train": SplitSummary(images=9, boxes=10, shards=["train-00000-of-00001.tfrecord"])}
    if val_images:
        splits["val"] = SplitSummary(images=val_images, boxes=val_images, shards=["val-00000-of-00001.tfrecord"])
    return ConversionReport(
        format="voc",
        label_map={1: "raccoon"},
        splits=splits,
        max_instances_per_image=3,
        problems=[],
        dropped_images=[],
        stats=compute_stats([]),
        anchors=None,
    )
