"""Conversion images/s and tf.data pipeline images/s (training path, 512x512) on a dataset folder.

Usage: .venv/bin/python -m bench.data_throughput [DATASET_DIR] [--seconds 20]
Prints one JSON line per measurement (machine, versions, settings, figures).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import QUICK, RACCOON, emit
from effdet.data.convert import convert_dataset
from effdet.data.pipeline import build_dataset
from effdet.workflow import Records, resolve_config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", nargs="?", type=Path, default=RACCOON)
    parser.add_argument("--seconds", type=float, default=3.0 if QUICK else 20.0)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "records"
        start = time.perf_counter()
        report = convert_dataset(args.dataset, out, val_fraction=0.1)
        elapsed = time.perf_counter() - start
        images = sum(s.images for s in report.splits.values())
        emit("convert", images=images, seconds=round(elapsed, 2), images_per_sec=round(images / elapsed, 1))
        config = resolve_config("efficientdet-d0", report, None)
        dataset = build_dataset(Records(out).train_files, config, args.batch_size, training=True, seed=0)
        iterator = iter(dataset)
        next(iterator)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            count += int(next(iterator)["images"].shape[0])
        elapsed = time.perf_counter() - start
        emit(
            "pipeline",
            image_size=512,
            batch_size=args.batch_size,
            training=True,
            images=count,
            seconds=round(elapsed, 2),
            images_per_sec=round(count / elapsed, 1),
        )


if __name__ == "__main__":
    main()
