"""Job leases and the progress recorder: one runner at a time, takeover of dead workers, throttled writes."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select, update

from core.db import session_scope
from core.states import claim, holder_is_dead, renew, worker_id
from core.tables import Job, JobEvent, JobStatus, utcnow
from worker.progress import JobRecorder


def _job(rows: Any, service: Path) -> str:
    dataset_id = rows.add_dataset(rows.zip_folder(service, service.parent / "empty.zip"))
    return rows.add_job(dataset_id, {}, {"num_steps": 1})


def _set(job_id: str, **values: Any) -> None:
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == job_id).values(**values))


def test_acquire_gives_the_job_to_one_worker_only(service: Path, rows: Any) -> None:
    job_id = _job(rows, service)
    assert claim(job_id, "host-a:1", lease_s=60) == 1
    assert claim(job_id, "host-b:2", lease_s=60) is None
    job = rows.job(job_id)
    assert (job.worker, job.status, job.attempts) == ("host-a:1", JobStatus.training, 1)
    assert job.started_at is not None


def test_acquire_takes_over_a_stale_lease(service: Path, rows: Any) -> None:
    job_id = _job(rows, service)
    claim(job_id, "host-a:1", lease_s=60)
    _set(job_id, heartbeat_at=utcnow() - timedelta(seconds=61))
    assert claim(job_id, "host-b:2", lease_s=60) == 2
    assert not renew(job_id, "host-a:1"), "the old holder must learn it lost the lease"
    assert renew(job_id, "host-b:2")


def test_acquire_takes_over_a_dead_local_process_at_once(service: Path, rows: Any) -> None:
    job_id = _job(rows, service)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = f"{worker_id().rpartition(':')[0]}:{child.pid}"
    assert holder_is_dead(dead)
    assert not holder_is_dead(worker_id())
    assert not holder_is_dead("other-host:1")
    claim(job_id, dead, lease_s=60)
    assert claim(job_id, worker_id(), lease_s=60) == 2


def test_acquire_refuses_a_finished_job(service: Path, rows: Any) -> None:
    job_id = _job(rows, service)
    _set(job_id, status=JobStatus.cancelled.value)
    assert claim(job_id, "host-a:1", lease_s=60) is None
    assert rows.job(job_id).attempts == 0


def _progress(step: int, total: int = 10) -> SimpleNamespace:
    data = {"step": step, "total_steps": total, "loss": 1.0}
    return SimpleNamespace(step=step, total_steps=total, model_dump=lambda **_: data)


def test_recorder_throttles_progress_but_keeps_the_last(service: Path, rows: Any) -> None:
    job_id = _job(rows, service)
    claim(job_id, "host-a:1", lease_s=60)
    recorder = JobRecorder(job_id, "host-a:1", interval_s=60)
    for step in range(1, 11):
        recorder.progress(_progress(step))
    with session_scope() as session:
        steps = session.scalars(select(JobEvent.data).where(JobEvent.job_id == job_id, JobEvent.kind == "progress"))
        assert [d["step"] for d in steps] == [1, 10]
    assert rows.job(job_id).progress["step"] == 10


def test_recorder_stops_on_cancel_and_on_lost_lease(service: Path, rows: Any) -> None:
    job_id = _job(rows, service)
    claim(job_id, "host-a:1", lease_s=60)
    recorder = JobRecorder(job_id, "host-a:1", interval_s=0)
    assert not recorder.should_stop()
    _set(job_id, cancel_requested=True)
    assert not recorder.should_stop(), "the database is read at most once a second"
    time.sleep(1.05)
    assert recorder.should_stop()
    assert recorder.cancelled
    assert not recorder.lost

    other = JobRecorder(job_id, "host-b:2", interval_s=0)
    other.progress(_progress(3))
    assert other.lost, "a worker without the lease must not write progress"
    assert rows.job(job_id).progress is None
