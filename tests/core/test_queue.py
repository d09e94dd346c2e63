"""Each kind of work has its own queue, so CPU-only workers (`-Q convert,evaluate`) and GPU workers (`-Q train`) can
split it; a worker without -Q consumes every queue, the old default one included."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from core.db import reset_caches
from core.queue import QUEUES, send_convert, send_evaluation, send_job


def test_each_kind_of_work_goes_to_its_own_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = tmp_path / "broker.db"
    monkeypatch.setenv("EFFDET_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EFFDET_BROKER_URL", f"sqla+sqlite:///{broker}")
    reset_caches()
    send_convert("d1")
    send_job("j1")
    send_evaluation("e1")
    engine = create_engine(f"sqlite:///{broker}")
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT q.name, m.payload FROM kombu_message m JOIN kombu_queue q ON m.queue_id = q.id")
        ).all()
    engine.dispose()
    reset_caches()
    routed = {payload.split('"task": "')[1].split('"')[0]: queue for queue, payload in rows}
    assert routed == {
        "worker.tasks.convert_dataset": "convert",
        "worker.tasks.run_job": "train",
        "worker.tasks.run_evaluation": "evaluate",
    }


def test_a_worker_without_q_consumes_every_queue() -> None:
    from worker.celery_app import celery_app

    assert {queue.name for queue in celery_app.conf.task_queues} == set(QUEUES)
