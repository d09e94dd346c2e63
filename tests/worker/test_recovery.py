"""The recovery sweep: jobs of dead workers and stalled conversions are sent again, live ones are left alone."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

import core.queue
from core.db import session_scope
from core.states import claim
from core.tables import Dataset, Job, JobStatus, utcnow
from worker.recovery import MAX_ATTEMPTS, sweep


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """What the sweep queued, instead of a broker."""
    queued: dict[str, list[str]] = {"jobs": [], "datasets": []}
    monkeypatch.setattr(core.queue, "send_job", queued["jobs"].append)
    monkeypatch.setattr(core.queue, "send_convert", queued["datasets"].append)
    return queued


def _job(rows: Any, service: Path) -> str:
    dataset_id = rows.add_dataset(rows.zip_folder(service, service.parent / "empty.zip"))
    return rows.add_job(dataset_id, {}, {"num_steps": 1})


def _age(job_id: str, seconds: float) -> None:
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow() - timedelta(seconds=seconds)))


def test_sweep_requeues_a_job_whose_worker_went_silent(service: Path, rows: Any, sent: dict[str, list[str]]) -> None:
    job_id = _job(rows, service)
    claim(job_id, "elsewhere:1", lease_s=5)
    _age(job_id, 6)
    assert sweep() == ([job_id], [])
    job = rows.job(job_id)
    assert job.worker is None
    assert job.status == JobStatus.training
    assert sweep() == ([], []), "a re-queued job is not sent again while it waits for a worker"
    assert claim(job_id, "elsewhere:2", lease_s=5) == 2
    assert sent["jobs"] == [job_id]


def test_sweep_leaves_live_and_queued_jobs_alone(service: Path, rows: Any, sent: dict[str, list[str]]) -> None:
    live = _job(rows, service)
    claim(live, "elsewhere:1", lease_s=5)
    _job(rows, service)
    assert sweep() == ([], [])


def test_sweep_fails_a_job_whose_workers_keep_dying(service: Path, rows: Any, sent: dict[str, list[str]]) -> None:
    job_id = _job(rows, service)
    claim(job_id, "elsewhere:1", lease_s=5)
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == job_id).values(attempts=MAX_ATTEMPTS))
    _age(job_id, 6)
    assert sweep() == ([], [])
    job = rows.job(job_id)
    assert job.status == JobStatus.failed
    assert "stopped 5 times" in (job.error or "")


def test_sweep_requeues_a_stalled_conversion_only(service: Path, rows: Any, sent: dict[str, list[str]]) -> None:
    archive = rows.zip_folder(service, service.parent / "empty.zip")
    stalled, waiting = rows.add_dataset(archive), rows.add_dataset(archive)
    with session_scope() as session:
        session.execute(
            update(Dataset)
            .where(Dataset.id == stalled)
            .values(progress={"done": 1, "total": 9}, updated_at=utcnow() - timedelta(seconds=6))
        )
    assert sweep() == ([], [stalled])
    assert rows.dataset(stalled).progress is None
    assert sent["datasets"] == [stalled]
    assert waiting not in sent["datasets"]
