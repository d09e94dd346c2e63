"""REST predict latency (batch 1, sequential) against the raw SavedModel it serves, in the same run.

Usage: .venv/bin/python bench/predict_rest.py [--runs 30] [--model d0]
Exports a D0 (random weights; latency does not depend on them) at its own size, registers it in a fresh data
dir, serves the API with uvicorn in a subprocess, then times POST /v1/models/{id}/predict with a 650x417 JPEG
and the SavedModel's serving_default on the same bytes. Prints one JSON line with p50/p95 and the ratio.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def _jpeg() -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, size=(417, 650, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _register(folder: Path, variant: str) -> str:
    """Export a model into the data dir and add the rows a served model has (dataset, job, model version)."""
    from app.db import migrate, session_scope
    from app.models import Dataset, Job, ModelVersion
    from effdet.config import get_config
    from effdet.export import export_saved_model
    from effdet.model import build_model

    config = get_config(f"efficientdet-{variant}", {"num_classes": 1, "label_map": {1: "plate"}})
    export_saved_model(build_model(config), config, folder / "saved_model", min_score_thresh=0.0)
    migrate()
    with session_scope() as session:
        dataset = Dataset(name="bench", status="ready")
        session.add(dataset)
        session.flush()
        job = Job(dataset_id=dataset.id, model_name=config.model.name, status="succeeded", config={}, options={})
        session.add(job)
        session.flush()
        model = ModelVersion(job_id=job.id, name=config.model.name, version=1, path=str(folder))
        session.add(model)
        session.flush()
        return model.id


def _percentiles(times: list[float]) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(times, 50)), 1), "p95_ms": round(float(np.percentile(times, 95)), 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--model", default="d0")
    args = parser.parse_args()
    image = _jpeg()
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["EFFDET_DATA_DIR"] = scratch
        model_id = _register(Path(scratch) / "models" / "bench", args.model)
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--port", str(port)],
            env={**os.environ, "EFFDET_DATA_DIR": scratch},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=url, timeout=120) as client:
                for _ in range(120):
                    try:
                        if client.get("/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.5)
                files = {"file": ("image.jpg", image, "image/jpeg")}
                for _ in range(3):
                    client.post(f"/v1/models/{model_id}/predict", files=files).raise_for_status()
                rest = []
                for _ in range(args.runs):
                    start = time.perf_counter()
                    client.post(f"/v1/models/{model_id}/predict", files=files).raise_for_status()
                    rest.append((time.perf_counter() - start) * 1000)
        finally:
            server.terminate()
            server.wait(timeout=30)
        import tensorflow as tf

        serve = tf.saved_model.load(str(Path(scratch) / "models" / "bench" / "saved_model")).signatures[
            "serving_default"
        ]
        batch = tf.constant([image])
        for _ in range(3):
            serve(images=batch)
        raw = []
        for _ in range(args.runs):
            start = time.perf_counter()
            serve(images=batch)["num_detections"].numpy()
            raw.append((time.perf_counter() - start) * 1000)
    rest_stats, raw_stats = _percentiles(rest), _percentiles(raw)
    print(
        json.dumps(
            {
                "bench": "predict_rest",
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "tensorflow": tf.__version__,
                "model": f"efficientdet-{args.model}",
                "input_jpeg": "650x417",
                "batch": 1,
                "rest": rest_stats,
                "raw_saved_model": raw_stats,
                "p50_ratio": round(rest_stats["p50_ms"] / raw_stats["p50_ms"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
