"""Hyperparameters a converted dataset implies: num_classes and label_map from its label map,
max_instances_per_image large enough for its busiest image, and seg_num_classes (background and every class) when
its records hold class maps (automl users set these by hand and get them wrong)."""

from __future__ import annotations

from typing import Any

from effdet.data.convert import ConversionReport

DEFAULT_MAX_INSTANCES = 100


def dataset_hparams(report: ConversionReport, given: dict[str, Any]) -> dict[str, Any]:
    """Overrides for keys the user did not give: num_classes, label_map, max_instances_per_image, and
    seg_num_classes = num_classes + 1 when the dataset has masks (class map ids are label ids, 0 the background)."""
    num_classes = max(report.label_map, default=1)
    implied: dict[str, Any] = {
        "num_classes": num_classes,
        "label_map": dict(report.label_map),
        "max_instances_per_image": max(DEFAULT_MAX_INSTANCES, report.max_instances_per_image),
    }
    if report.segmentation is not None:
        implied["seg_num_classes"] = num_classes + 1
    return {key: value for key, value in implied.items() if key not in given}
