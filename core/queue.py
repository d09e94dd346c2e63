"""The job queue as both sides see it: the task names the worker registers and the `send_*` calls that queue them
(by name, so a sender imports neither the worker nor TensorFlow)."""

from __future__ import annotations

from functools import lru_cache

from celery import Celery

from core.settings import get_settings

CONVERT_TASK = "worker.tasks.convert_dataset"
TRAIN_TASK = "worker.tasks.run_job"
EVALUATE_TASK = "worker.tasks.run_evaluation"

CONVERT_QUEUE, EVALUATE_QUEUE, TRAIN_QUEUE = "convert", "evaluate", "train"
QUEUES = (CONVERT_QUEUE, EVALUATE_QUEUE, TRAIN_QUEUE, "celery")
"""One queue per kind of work, so a CPU-only machine can take conversions and evaluations (`-Q convert,evaluate`)
and a GPU machine training (`-Q train`); a worker started without -Q takes them all. "celery", the default queue,
drains what was queued before queues were split."""


@lru_cache(maxsize=4)
def _sender_for(broker_url: str) -> Celery:
    return Celery("effdet-sender", broker=broker_url)


def sender() -> Celery:
    """A Celery app that only sends, on the current settings' broker (read at each call, so a changed
    EFFDET_BROKER_URL applies; sending by task name needs none of the worker's configuration)."""
    return _sender_for(get_settings().resolved_broker_url)


def send_convert(dataset_id: str) -> None:
    """Queue validation + conversion of an uploaded dataset."""
    sender().send_task(CONVERT_TASK, args=[dataset_id], queue=CONVERT_QUEUE)


def send_job(job_id: str) -> None:
    """Queue a training job (train -> evaluate -> export)."""
    sender().send_task(TRAIN_TASK, args=[job_id], queue=TRAIN_QUEUE)


def send_evaluation(evaluation_id: str) -> None:
    """Queue an evaluation of a model on a dataset."""
    sender().send_task(EVALUATE_TASK, args=[evaluation_id], queue=EVALUATE_QUEUE)
