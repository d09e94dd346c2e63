"""Three real Celery workers (separate processes) on PostgreSQL and Redis race for one queue: three dataset uploads
queued through the API before any worker runs, then six jobs submitted through the API while all three sit idle.

It proves that each conversion and each job runs exactly once: one convert task per upload and no second
conversion attempt; one "training" state event (the claim) and one attempt per job. No lease is held twice: a job
keeps one holder, a pool child of one of the three workers, from its claim to its success, and no pool child holds
two jobs at once. The jobs are spread over more than one worker, every dataset ends ready and every job succeeded
with a model of its own (distinct version numbers). A webhook registered first gets each of the nine ends once,
though three workers' delivery threads race for them."""

from __future__ import annotations

import itertools
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.main import create_app
from core import layout
from core.db import reset_caches, session_scope
from core.settings import get_settings
from core.tables import FINISHED, DatasetStatus, JobEvent, JobStatus, ModelVersion
from tests.cheap import CHEAP
from tests.e2e import conftest as e2e
from tests.helpers.webhooks import Receiver

production_env = e2e.production_env
"""The end-to-end tests' fixture: a fresh schema on the local PostgreSQL and an unused database of the local Redis,
each started if down (a failure, never a skip, when it cannot be); the schema is dropped and the database flushed
afterwards."""

NUM_WORKERS = 3
NUM_DATASETS = 3
JOBS_PER_DATASET = 2
NUM_IMAGES = 1
"""One image per dataset: too few for a val split (the API takes no val_fraction of 0), so no job evaluates."""
LEASE_S = "10"
"""The lease of production_env: long enough that a heartbeat delayed by three workers sharing two busy cores is not
taken for a dead worker (which would rightly run the job again)."""
JOB = {
    "hparams": {"image_size": 128, **CHEAP},
    "num_steps": 2,
    "batch_size": 2,
    "max_train_seconds": 0.001,
    "export_formats": ["saved_model"],
}
"""The cheapest job that still goes training -> evaluating -> exporting -> succeeded with a model: its time budget
is spent before the first step (no train step is traced), its dataset has no val split (no evaluation, no scoring
of the export) and it exports the SavedModel alone."""
CONVERT, TRAIN = "worker.tasks.convert_dataset", "worker.tasks.run_job"
TASK_LINE = re.compile(r"Task (worker\.tasks\.\w+)\[[0-9a-f-]+\] (received|succeeded)")
DROPPED_JOB = re.compile(r"job \w+: (nothing to do|held by a live worker or finished)")
"""A duplicate job delivery that the claim turned away (the idle-worker sweep may re-send a job still queued)."""
NEVER = (
    "nothing to do (ready)",  # a conversion delivered again after it was done
    "another attempt published its records first",  # two conversions of one dataset at once
    "stopped responding",  # a lease or a conversion taken for dead and sent again
    "lease lost",
    "another worker took the job over",
    "ERROR/",
)


@pytest.fixture
def race_env(
    production_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, use_service: Callable[..., Path]
) -> Iterator[dict[str, str]]:
    """production_env migrated and set in this process's environment, which the API client and the workers
    started afterwards read."""
    use_service(monkeypatch, Path(production_env["EFFDET_DATA_DIR"]), production_env["EFFDET_DATABASE_URL"])
    monkeypatch.setenv("EFFDET_BROKER_URL", production_env["EFFDET_BROKER_URL"])
    monkeypatch.setenv("EFFDET_JOB_LEASE_S", LEASE_S)
    monkeypatch.setenv("EFFDET_WEBHOOK_ALLOWED_NETWORKS", '["127.0.0.1/32"]')
    monkeypatch.setenv("EFFDET_WEBHOOK_POLL_S", "0.5")
    reset_caches()
    yield production_env
    reset_caches()


def _until(condition: Callable[[], bool], timeout: float, what: str, workers: list[Any]) -> None:
    """Poll condition() until it holds; fail with every worker's log when it times out or a worker exits."""
    deadline = time.monotonic() + timeout
    while not condition():
        exited = [worker.log.name for worker in workers if worker.process.poll() is not None]
        if exited or time.monotonic() > deadline:
            logs = "\n\n".join(f"--- {worker.log.name}:\n{worker.tail()}" for worker in workers)
            reason = f"{exited} exited" if exited else f"timed out after {timeout:.0f} s"
            raise AssertionError(f"{reason} waiting for {what}; worker logs:\n{logs}")
        time.sleep(0.2)


def _upload(client: TestClient, tmp_path: Path, rows: Any, index: int) -> str:
    """Upload a synthetic VOC dataset through the API; returns its id (its conversion is queued)."""
    from effdet.data.synthetic import write_dataset

    raw = write_dataset(tmp_path / f"plates-{index}", NUM_IMAGES, "voc", seed=index)
    archive = rows.zip_folder(raw, tmp_path / f"plates-{index}.zip")
    uploaded = client.post("/v1/datasets", files={"file": (archive.name, archive.read_bytes(), "application/zip")})
    assert uploaded.status_code == 202, uploaded.text
    return str(uploaded.json()["id"])


def _submit(client: TestClient, dataset_id: str) -> str:
    submitted = client.post("/v1/jobs", json={"dataset_id": dataset_id, **JOB})
    assert submitted.status_code == 202, submitted.text
    return str(submitted.json()["id"])


def _pool_children(workers: list[Any]) -> dict[str, str]:
    """Lease holder name ('hostname:pid', core.states.worker_id) of each worker's pool child -> its log's name."""
    host = socket.gethostname()
    return {f"{host}:{pid}": worker.log.name for worker in workers for pid in e2e.descendants(worker.process.pid)}


def _state_events(job_id: str) -> list[tuple[str, str | None, datetime]]:
    """The job's state events in order: (status, worker, created_at)."""
    with session_scope() as session:
        found = session.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.kind == "state").order_by(JobEvent.id)
        )
        return [(event.data["status"], event.data.get("worker"), event.created_at) for event in found]


def _lease_of(job_id: str, rows: Any, holders: dict[str, str]) -> tuple[str, datetime, datetime]:
    """(holder, claimed at, succeeded at) of a job that must have run once, under one holder, to success."""
    job = rows.job(job_id)
    assert job.status == JobStatus.succeeded, job.error
    states = _state_events(job_id)
    starts = [state for state in states if state[0] == JobStatus.training]
    assert len(starts) == 1, f"job {job_id} started training {len(starts)} times: {states}"
    assert job.attempts == 1, f"job {job_id} was claimed {job.attempts} times"
    assert [status for status, _, _ in states] == ["queued", "training", "evaluating", "exporting", "succeeded"]
    holder = starts[0][1]
    assert holder in holders, f"job {job_id}: {holder} is none of the workers' pool children {sorted(holders)}"
    assert {worker for _, worker, _ in states[1:]} == {holder} == {job.worker}, f"job {job_id} changed hands"
    return holder, starts[0][2], states[-1][2]


@pytest.mark.slow
def test_three_workers_racing_run_each_conversion_and_job_once_without_a_double_lease(
    race_env: dict[str, str], tmp_path: Path, rows: Any, workers: Callable[[], Any]
) -> None:
    receiver = Receiver()
    with TestClient(create_app(get_settings())) as client:
        assert client.post("/v1/webhooks", json={"url": f"{receiver.url}/race"}).status_code == 201
        dataset_ids = [_upload(client, tmp_path, rows, index) for index in range(NUM_DATASETS)]
        started = [workers() for _ in range(NUM_WORKERS)]  # they race for the three queued conversions
        _until(
            lambda: all(rows.dataset(d).status != DatasetStatus.validating for d in dataset_ids),
            180,
            "the conversions",
            started,
        )
        holders = _pool_children(started)
        job_ids = [_submit(client, d) for d in dataset_ids for _ in range(JOBS_PER_DATASET)]  # all three idle
        _until(lambda: all(rows.job(j).status in FINISHED for j in job_ids), 600, "the jobs' ends", started)
        ends = len(dataset_ids) + len(job_ids)
        _until(lambda: len(receiver.posts) >= ends, 60, "the webhook's deliveries", started)
        time.sleep(2)  # a second delivery of an end, were there one, would arrive within a few rounds
        listed = client.get("/v1/jobs").json()["items"]
    assert {job["id"]: job["status"] for job in listed} == dict.fromkeys(job_ids, "succeeded")
    receiver.close()
    announced = Counter((event["type"], event["data"]["id"]) for event in receiver.events())
    expected = {("dataset.ready", d) for d in dataset_ids} | {("job.succeeded", j) for j in job_ids}
    assert announced == dict.fromkeys(expected, 1), "each end reaches the webhook exactly once"

    for dataset_id in dataset_ids:
        dataset = rows.dataset(dataset_id)
        assert dataset.status == DatasetStatus.ready, dataset.error
        assert (dataset.num_images, dataset.progress) == (NUM_IMAGES, {"done": NUM_IMAGES, "total": NUM_IMAGES})
        folder = layout.dataset_dir(get_settings(), dataset_id)
        assert sorted(p.name for p in folder.iterdir()) == [layout.RECORDS_DIR, layout.UPLOAD_FILE], "no scratch"
    logs = "\n".join(worker.log.read_text(errors="replace") for worker in started)
    tasks = Counter(TASK_LINE.findall(logs))
    assert tasks[CONVERT, "received"] == tasks[CONVERT, "succeeded"] == NUM_DATASETS, f"one per upload: {tasks}"
    dropped = len(DROPPED_JOB.findall(logs))
    assert tasks[TRAIN, "received"] == tasks[TRAIN, "succeeded"] == len(job_ids) + dropped, tasks
    assert [line for line in logs.splitlines() if any(text in line for text in NEVER)] == []

    leases: dict[str, list[tuple[datetime, datetime, str]]] = {}
    for job_id in job_ids:
        holder, claimed, ended = _lease_of(job_id, rows, holders)
        leases.setdefault(holder, []).append((claimed, ended, job_id))
    for holder, held in leases.items():
        for (_, end, first), (start, _, second) in itertools.pairwise(sorted(held)):
            assert end <= start, f"{holder} held jobs {first} and {second} at once"
    spread = {holders[holder]: len(held) for holder, held in leases.items()}
    assert len(spread) >= 2, f"the six jobs were not spread over the workers: {spread}"

    with session_scope() as session:
        models = session.scalars(select(ModelVersion).where(ModelVersion.job_id.in_(job_ids))).all()
    assert sorted(model.job_id for model in models) == sorted(job_ids), "one model per job"
    assert sorted(model.version for model in models) == list(range(1, len(job_ids) + 1)), "distinct versions"


def test_jobs_succeeding_at_the_same_instant_get_distinct_model_versions(race_env: dict[str, str]) -> None:
    """Three workers end jobs of one variant at once (as two exports finishing together do): PostgreSQL's read
    committed isolation would let each read the same highest version without the lock `succeed` takes."""
    from core import states
    from core.tables import Dataset, Job

    with session_scope() as session:
        dataset = Dataset(name="d", status=DatasetStatus.ready)
        session.add(dataset)
        session.flush()
        jobs = [
            Job(dataset_id=dataset.id, model_name="efficientdet-d0", config={}, options={}, status="exporting")
            for _ in range(NUM_WORKERS)
        ]
        for index, job in enumerate(jobs):
            job.worker, job.attempts = f"holder-{index}", 1
        session.add_all(jobs)
        session.commit()
        for job in jobs:
            session.refresh(job)
            session.expunge(job)
    barrier = threading.Barrier(len(jobs))

    def finish(job: Job) -> None:
        barrier.wait()
        states.succeed(job, str(job.worker), uuid.uuid4().hex, "/models/x", None, {})

    threads = [threading.Thread(target=finish, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    with session_scope() as session:
        versions = sorted(session.scalars(select(ModelVersion.version)))
    assert versions == [1, 2, 3]
