"""Peak memory of the API and the worker while the service converts a dataset and runs a fine-tuning job.

Usage: .venv/bin/python -m bench.job_memory [--model d0] [--image-size 512] [--steps 20] [--batch-size 4]
Starts `python -m app.runner` (the API and one Celery worker, embedded SQLite database and queue) on a fresh
data dir, uploads the shared raccoon dataset, submits a job and samples the resident memory of the API process
and of every worker process (the Celery parent and its pool child, where TensorFlow runs) until the job ends.
Prints one JSON line: job status and seconds, peak RSS of the API and of the worker.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import FINISHED, QUICK, emit, memory_mb, process_tree, raccoon_zip, serve_service, wait_for


class Sampler:
    """The highest RSS seen of the API process and of the worker processes below it."""

    def __init__(self, api_pid: int) -> None:
        self.api_pid = api_pid
        self.api_mb = 0.0
        self.worker_mb = 0.0

    def sample(self) -> None:
        self.api_mb = max(self.api_mb, memory_mb(self.api_pid).get("peak_rss_mb", 0.0))
        worker = [memory_mb(pid).get("peak_rss_mb", 0.0) for pid in process_tree(self.api_pid)]
        self.worker_mb = max([self.worker_mb, *worker])

    def wait(self, client: httpx.Client, path: str, done: tuple[str, ...], timeout: float) -> dict[str, Any]:
        """Poll path every half second (sampling memory) until its status is in done."""
        return wait_for(client, path, done, timeout, 0.5, lambda _body: self.sample())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default="d0")
    parser.add_argument("--image-size", type=int, default=128 if QUICK else 512)
    parser.add_argument("--steps", type=int, default=2 if QUICK else 20)
    parser.add_argument("--batch-size", type=int, default=2 if QUICK else 4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, serve_service(Path(scratch) / "var", Path(scratch) / "log") as api:
        sampler = Sampler(api.pid)
        with httpx.Client(base_url=api.url, timeout=120) as client:
            upload = client.post("/v1/datasets", files={"file": ("raccoon.zip", raccoon_zip("annotations"))})
            upload.raise_for_status()
            dataset = sampler.wait(client, f"/v1/datasets/{upload.json()['id']}", ("ready", "failed"), 600)
            hparams = {"image_size": args.image_size}
            submitted = client.post(
                "/v1/jobs",
                json={
                    "dataset_id": dataset["id"],
                    "model": f"efficientdet-{args.model}",
                    "hparams": hparams,
                    "num_steps": args.steps,
                    "batch_size": args.batch_size,
                },
            )
            submitted.raise_for_status()
            start = time.perf_counter()
            job = sampler.wait(client, f"/v1/jobs/{submitted.json()['id']}", FINISHED, 1800)
            seconds = time.perf_counter() - start
        emit(
            "job_memory",
            model=f"efficientdet-{args.model}",
            image_size=args.image_size,
            steps=args.steps,
            batch_size=args.batch_size,
            status=job["status"],
            job_seconds=round(seconds, 1),
            train_images_per_sec=round((job.get("progress") or {}).get("images_per_sec") or 0, 2),
            api_peak_rss_mb=sampler.api_mb,
            worker_peak_rss_mb=sampler.worker_mb,
        )


if __name__ == "__main__":
    main()
