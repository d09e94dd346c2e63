"""The Celery tasks: thin wrappers taking only ids; the work is in worker.convert, worker.jobs and worker.evaluate.

Every task is idempotent (a redelivery resumes or does nothing) and inherits the app's acks_late and
reject_on_worker_lost, so a pool child that dies gives its message back. No time limit: a time limit kills
the pool child, which would requeue the task forever; `max_train_seconds` is the budget of a job.
"""

from __future__ import annotations

from core.queue import CONVERT_TASK, EVALUATE_TASK, TRAIN_TASK
from worker import recovery, webhooks
from worker.celery_app import celery_app
from worker.convert import run_conversion
from worker.evaluate import run_evaluation as run_model_evaluation
from worker.jobs import run_job as run_training_job

recovery.install()
webhooks.install()


@celery_app.task(name=CONVERT_TASK)
def convert_dataset(dataset_id: str) -> None:
    """Validate and convert an uploaded dataset to TFRecords (status validating -> ready | failed)."""
    run_conversion(dataset_id)


@celery_app.task(name=TRAIN_TASK)
def run_job(job_id: str) -> None:
    """Train, evaluate and export a job, resuming its run if an earlier attempt died."""
    run_training_job(job_id)


@celery_app.task(name=EVALUATE_TASK)
def run_evaluation(evaluation_id: str) -> None:
    """Run a model over a dataset's split and store its metrics (queued -> running -> succeeded | failed)."""
    run_model_evaluation(evaluation_id)
