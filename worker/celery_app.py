"""The Celery application: broker from settings (Redis in production, a SQLite-backed kombu transport
embedded), late acknowledgement so a task whose worker dies is delivered again, one task at a time."""

from __future__ import annotations

from celery import Celery

from app.settings import get_settings

CONVERT_TASK = "worker.tasks.convert_dataset"
TRAIN_TASK = "worker.tasks.run_job"


def make_celery() -> Celery:
    settings = get_settings()
    celery = Celery("effdet", broker=settings.resolved_broker_url, include=["worker.tasks"])
    celery.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 3600 * 24},
    )
    return celery


celery_app = make_celery()
