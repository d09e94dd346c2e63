"""What the API calls to hand work to the workers (by task name, so the API never imports TensorFlow)."""

from __future__ import annotations

from worker.celery_app import CONVERT_TASK, TRAIN_TASK, celery_app


def send_convert(dataset_id: str) -> None:
    """Queue validation + conversion of an uploaded dataset."""
    celery_app.send_task(CONVERT_TASK, args=[dataset_id])


def send_job(job_id: str) -> None:
    """Queue a training job (train -> evaluate -> export)."""
    celery_app.send_task(TRAIN_TASK, args=[job_id])
