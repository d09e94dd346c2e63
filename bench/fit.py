"""Train on converted records and score the exported weights on their val split: the shared core of the
learning benchmarks, returning the figures they report."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench.common import QUICK
from effdet.config import Config
from effdet.seg_metrics import SegmentationMetrics
from effdet.train import TrainOptions
from effdet.workflow import Records, evaluate_run, fine_tune

FROM_SCRATCH = {
    "num_classes": 1,
    "optimizer": "adam",
    "learning_rate": 0.016,
    "lr_warmup_init": 0.0016,
    "jitter_min": 0.8,
    "jitter_max": 1.2,
}
"""The synthetic-plate learning runs' recipe, D0 from scratch (tests/effdet/test_learning.py's): Adam, lr 0.016,
warm-up from 0.0016, scale jitter 0.8-1.2, one class."""


def add_synthetic_arguments(parser: argparse.ArgumentParser) -> None:
    """The synthetic-plate runs' settings: --image-size, --steps, --num-images, --batch-size (QUICK: a smoke run)."""
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20 if QUICK else 600)
    parser.add_argument("--num-images", type=int, default=40 if QUICK else 400)
    parser.add_argument("--batch-size", type=int, default=8)


def train_and_evaluate(config: Config, data_dir: Path, run_dir: Path, options: TrainOptions) -> dict[str, Any]:
    """Steps done, how the run ended, training minutes and images/s, then AP/AP50/AP75 on data_dir's val split
    (None without a detection head) and, with a segmentation head, mIoU, pixel accuracy and IoU by class name."""
    records = Records(data_dir)
    start = time.perf_counter()
    result = fine_tune(config, records, run_dir, options)
    minutes = (time.perf_counter() - start) / 60
    metrics = evaluate_run(run_dir, records)
    if metrics is None:
        raise ValueError(f"{data_dir} has no val images to score the run on; convert it with val_fraction > 0")
    figures: dict[str, Any] = {
        "steps": result.step,
        "ended": result.status,
        "train_minutes": round(minutes, 1),
        "train_images_per_sec": round(result.images_per_sec or 0, 2),
        "ap": _rounded(metrics.ap),
        "ap50": _rounded(metrics.ap50),
        "ap75": _rounded(metrics.ap75),
    }
    if metrics.segmentation is not None:
        figures |= segmentation_figures(metrics.segmentation)
    return figures


def segmentation_figures(metrics: SegmentationMetrics) -> dict[str, Any]:
    """mIoU, pixel accuracy and IoU by class name (None for a class neither labelled nor predicted), rounded."""
    return {
        "miou": round(metrics.miou, 3),
        "pixel_accuracy": round(metrics.pixel_accuracy, 3),
        "iou": dict(zip(metrics.class_names, map(_rounded, metrics.per_class_iou), strict=True)),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
