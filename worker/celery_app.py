"""The Celery application: broker from settings (Redis in production, a SQLite-backed kombu transport
embedded), late acknowledgement so a task whose worker dies is delivered again, one task at a time."""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from core.queue import QUEUES
from core.settings import get_settings


def transport_options(broker_url: str) -> dict[str, object]:
    """Broker options: Redis redelivers an unacknowledged task after the visibility timeout (a day, longer than
    any task; the recovery sweep resumes dead workers' jobs much sooner). kombu's SQLAlchemy transport hands
    its options to create_engine, which rejects unknown ones, so it gets none."""
    if broker_url.startswith(("redis://", "rediss://", "redis+socket://", "sqs://")):
        return {"visibility_timeout": 3600 * 24}
    return {}


def make_celery() -> Celery:
    settings = get_settings()
    broker_url = settings.resolved_broker_url
    celery = Celery("effdet", broker=broker_url, include=["worker.tasks"])
    celery.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport_options(broker_url),
        task_queues=[Queue(name) for name in QUEUES],  # consumed unless -Q names fewer
    )
    return celery


celery_app = make_celery()
