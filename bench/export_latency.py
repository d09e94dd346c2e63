"""Exported SavedModel latency at batch 1 (p50/p95) per variant at its own input size, on a ~650x417 JPEG.

Usage: .venv/bin/python -m bench.export_latency [--models d0,d1,d2] [--runs 30]
Weights are random (latency does not depend on them); the score threshold is 0 so NMS has full work.
Prints one JSON line per variant with machine, versions, export seconds and the latency figures.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from bench.common import QUICK, RawModel, emit, export_model, jpeg, percentiles
from core.layout import saved_model_dir
from effdet.config import get_config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="d0" if QUICK else "d0,d1,d2")
    parser.add_argument("--runs", type=int, default=5 if QUICK else 30)
    args = parser.parse_args()
    image = jpeg()
    for name in args.models.split(","):
        config = get_config(f"efficientdet-{name}")
        with tempfile.TemporaryDirectory() as scratch:
            start = time.perf_counter()
            folder = export_model(Path(scratch) / "model", name)
            export_seconds = time.perf_counter() - start
            raw = RawModel.load(saved_model_dir(folder), image)
            for _ in range(3):
                raw.call()
            times = [raw.timed() for _ in range(args.runs)]
        emit(
            "export_latency",
            model=f"efficientdet-{name}",
            image_size=list(config.model.image_size),
            input_jpeg="650x417",
            batch=1,
            export_seconds=round(export_seconds, 1),
            **percentiles(times),
            peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        )


if __name__ == "__main__":
    main()
