"""Train on converted records and score the exported weights on their val split: the shared core of the
learning benchmarks, returning the figures they report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from effdet.config import Config
from effdet.train import TrainOptions
from effdet.workflow import Records, evaluate_run, fine_tune


def train_and_evaluate(config: Config, data_dir: Path, run_dir: Path, options: TrainOptions) -> dict[str, Any]:
    """Steps done, how the run ended, training minutes and images/s, then AP/AP50/AP75 on data_dir's val split."""
    records = Records(data_dir)
    start = time.perf_counter()
    result = fine_tune(config, records, run_dir, options)
    minutes = (time.perf_counter() - start) / 60
    metrics = evaluate_run(run_dir, records)
    if metrics is None:
        raise ValueError(f"{data_dir} has no val images to score the run on; convert it with val_fraction > 0")
    return {
        "steps": result.step,
        "ended": result.status,
        "train_minutes": round(minutes, 1),
        "train_images_per_sec": round(result.images_per_sec or 0, 2),
        "ap": round(metrics.ap or 0, 3),
        "ap50": round(metrics.ap50 or 0, 3),
        "ap75": round(metrics.ap75 or 0, 3),
    }
