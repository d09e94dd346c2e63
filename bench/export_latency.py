"""Exported SavedModel latency at batch 1 (p50/p95) per variant at its own input size, on a ~650x417 JPEG.

Usage: .venv/bin/python bench/export_latency.py [--models d0,d1,d2] [--runs 30]
Weights are random (latency does not depend on them); the score threshold is 0 so NMS has full work.
Prints one JSON line per variant with machine, versions, export seconds and the latency figures.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from effdet.config import get_config
from effdet.export import export_saved_model
from effdet.model import build_model


def _jpeg(width: int = 650, height: int = 417) -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="d0,d1,d2")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    image = tf.constant([_jpeg()])
    for name in args.models.split(","):
        config = get_config(f"efficientdet-{name}", {"num_classes": 1})
        with tempfile.TemporaryDirectory() as scratch:
            start = time.perf_counter()
            path = export_saved_model(build_model(config), config, Path(scratch) / "model", min_score_thresh=0.0)
            export_seconds = time.perf_counter() - start
            serve = tf.saved_model.load(str(path)).signatures["serving_default"]
            for _ in range(3):
                serve(images=image)
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                serve(images=image)["num_detections"].numpy()
                times.append((time.perf_counter() - start) * 1000)
        print(
            json.dumps(
                {
                    "bench": "export_latency",
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "tensorflow": tf.__version__,
                    "model": f"efficientdet-{name}",
                    "image_size": list(config.model.image_size),
                    "input_jpeg": "650x417",
                    "batch": 1,
                    "export_seconds": round(export_seconds, 1),
                    "p50_ms": round(float(np.percentile(times, 50)), 1),
                    "p95_ms": round(float(np.percentile(times, 95)), 1),
                    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
