"""A real Celery worker process: a job survives a SIGKILL of its whole worker (resumed from its checkpoint by
the next worker, never run twice at once) on the embedded SQLite database and broker, and ends succeeded with
its metrics and a new model version."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.db import session_scope
from core.queue import TRAIN_TASK
from core.settings import get_settings
from core.tables import JobEvent, JobStatus, ModelVersion
from worker.celery_app import make_celery
from worker.tasks import convert_dataset

STEPS = 24
"""Training steps of the job that is killed after its second checkpoint (every 4 steps)."""


@pytest.fixture
def backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_service: Any) -> str:
    """The embedded environment: SQLite database and kombu's SQLAlchemy broker on SQLite, in a temp data dir.
    (The PostgreSQL + Redis variant with a real worker is tests/e2e/test_journey.py.)"""
    use_service(monkeypatch, tmp_path / "var")
    monkeypatch.delenv("EFFDET_BROKER_URL", raising=False)
    return "sqlite"


def _train_log_runs(path: Path) -> list[list[int]]:
    """The steps of train.jsonl split where they go back (each run of increasing steps is one attempt)."""
    runs: list[list[int]] = []
    for line in path.read_text().splitlines():
        step = json.loads(line)["step"]
        if not runs or step <= runs[-1][-1]:
            runs.append([])
        runs[-1].append(step)
    return runs


@pytest.mark.slow
def test_sigkilled_worker_job_resumes_from_its_checkpoint_and_succeeds(
    backend: str, tmp_path: Path, rows: Any, workers: Callable[[], Any], wait: Any
) -> None:
    from effdet.data.synthetic import write_dataset

    raw = write_dataset(tmp_path / "plates", 12, "voc", seed=3)
    dataset_id = rows.add_dataset(rows.zip_folder(raw, tmp_path / "plates.zip"), val_fraction=0.25)
    convert_dataset(dataset_id)
    options = {"num_steps": STEPS, "batch_size": 2, "checkpoint_every": 4, "bn_recalibration_batches": 0}
    job_id = rows.add_job(dataset_id, {}, options)
    make_celery().send_task(TRAIN_TASK, args=[job_id])

    first = workers()
    wait(lambda: (rows.job(job_id).progress or {}).get("step", 0) >= 8, 240, "step 8", first)
    killed_at = rows.job(job_id).progress["step"]
    first.kill()
    assert rows.job(job_id).status == JobStatus.training

    second = workers()
    wait(lambda: rows.job(job_id).status in (JobStatus.succeeded, JobStatus.failed), 300, "the job's end", second)
    job = rows.job(job_id)
    assert job.status == JobStatus.succeeded, job.error
    assert job.attempts == 2, "one start per worker: the duplicate deliveries did not run it again"
    assert job.model_id is not None
    with session_scope() as session:
        events = [
            (e.kind, e.data)
            for e in session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))
        ]
    states = [data["status"] for kind, data in events if kind == "state"]
    assert states == ["training", "training", "evaluating", "exporting", "succeeded"]
    resumed = [data["message"] for kind, data in events if kind == "log" and "resumed" in data["message"]]
    assert len(resumed) == 1
    resumed_step = int(resumed[0].rsplit(" ", 1)[1])
    assert 4 <= resumed_step <= killed_at
    run = get_settings().data_dir / "runs" / job_id
    runs = _train_log_runs(run / "logs" / "train.jsonl")
    assert len(runs) == 2, f"two attempts, one after the other: {runs}"
    assert runs[0][-1] >= killed_at
    assert resumed_step < runs[1][0] <= runs[0][-1] + 1
    assert runs[1][-1] == STEPS
    assert f"resumed from {run / 'checkpoints'}" in (run / "logs" / "worker.log").read_text()

    assert job.progress["step"] == job.progress["total_steps"] == STEPS
    assert set(job.metrics) >= {"ap", "ap50", "ap75"}
    assert json.loads((run / "metrics.json").read_text())["ap"] == job.metrics["ap"]
    assert [data["ap"] for kind, data in events if kind == "metrics"] == [job.metrics["ap"]]
    with session_scope() as session:
        model = session.get(ModelVersion, job.model_id)
        assert model is not None
        assert (model.version, model.name, model.job_id) == (1, "efficientdet-d0", job_id)
        assert model.label_map == {"1": "class_1"}
        assert model.metrics == job.metrics
        assert (Path(model.path) / "saved_model" / "saved_model.pb").is_file()
