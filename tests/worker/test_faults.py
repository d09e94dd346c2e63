"""Faults on real processes and services: a worker SIGKILLed mid-conversion, Redis restarted (losing the queued
messages) before any worker ran, PostgreSQL stopped and started while the API is polled, and a data volume
that fills up under a job and an upload.

Redis and PostgreSQL here are servers of their own (the machine's binaries, free ports, removed afterwards),
so restarting them never cuts off other tests that use the machine's shared ones. (SIGKILL mid-training is
tests/worker/test_worker_process.py.)"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text

from app.main import create_app
from core import layout
from core.db import reset_caches, session_scope
from core.disk import disk_full_message
from core.queue import QUEUES, send_convert
from core.settings import get_settings
from core.states import UNCLAIMED_MESSAGE
from core.tables import DatasetStatus, JobEvent, JobStatus, ModelVersion
from effdet.layout import WEIGHTS_DIR
from worker.jobs import internal_error
from worker.tasks import convert_dataset, run_job

BACKENDS = ("sqlite", "postgresql")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_postgres_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; as root, run its tools as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class Postgres:
    """A throwaway PostgreSQL cluster (trust auth, no fsync) on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        assert versions, "PostgreSQL's server binaries are missing (/usr/lib/postgresql/*/bin); install postgresql"
        self.bin = versions[-1].parent
        self.root = Path(tempfile.mkdtemp(prefix="effdet-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        self.port = _free_port()
        self._run("initdb", "-D", str(self.root / "data"), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(_as_postgres_user([str(self.bin / tool), *args]), capture_output=True, timeout=60)
        assert done.returncode == 0, f"{tool} {' '.join(args)} failed:\n{done.stdout.decode()}{done.stderr.decode()}"

    def _ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.root / "data"), "-w", *args)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("-o", options, "-l", str(self.root / "server.log"), "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    def remove(self) -> None:
        if (self.root / "data" / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"


class Redis:
    """A Redis server of its own on a free port, without persistence (a restart loses every message)."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, _free_port()
        root.mkdir(parents=True, exist_ok=True)
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.ConnectionError:
            return False

    def _until(self, up: bool) -> None:
        deadline = time.monotonic() + 20
        while self._answers() != up:
            assert time.monotonic() < deadline, f"redis on {self.port} did not {'start' if up else 'stop'}"
            time.sleep(0.05)

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        command += ["no", "--dir", str(self.root), "--daemonize", "yes", "--logfile", str(self.root / "redis.log")]
        subprocess.run(command, check=True, timeout=30)
        self._until(up=True)

    def stop(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], check=False, timeout=30)
        self._until(up=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[Postgres]:
    """One private PostgreSQL for the module's tests (each gets a schema); removed at the end."""
    server = Postgres()
    yield server
    server.remove()


@pytest.fixture
def pg_url(postgres_server: Postgres) -> str:
    """A database URL on a fresh schema of the private PostgreSQL."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    return f"{postgres_server.url}?options=-csearch_path%3D{schema}"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Redis]:
    """A private Redis, shut down at the end however the test ends."""
    server = Redis(tmp_path / "redis")
    yield server
    server.stop()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The test runs on SQLite (a file beside, not inside, the data dir) and on the private PostgreSQL."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'effdet.db'}"


@pytest.fixture
def enter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_service: Any) -> Callable[..., Path]:
    """`enter(database_url, broker_url=None, data_dir=None)`: point this test (and the workers it starts) at a
    data dir (default tmp_path/var), a database and a broker (default: the embedded queue in the data dir)."""

    def enter_with(database_url: str, broker_url: str | None = None, data_dir: Path | None = None) -> Path:
        folder = use_service(monkeypatch, data_dir or tmp_path / "var", database_url)
        if broker_url:
            monkeypatch.setenv("EFFDET_BROKER_URL", broker_url)
        else:
            monkeypatch.delenv("EFFDET_BROKER_URL", raising=False)
        reset_caches()
        return Path(folder)

    return enter_with


def _plates_zip(tmp_path: Path, rows: Any, num_images: int, name: str = "plates") -> Path:
    from effdet.data.synthetic import write_dataset

    raw = write_dataset(tmp_path / name, num_images, "voc", seed=5)
    return rows.zip_folder(raw, tmp_path / f"{name}.zip")


def _ready_dataset(tmp_path: Path, rows: Any, val_fraction: float = 0.25) -> str:
    """A dataset of 8 images converted in-process (ready)."""
    dataset_id = rows.add_dataset(_plates_zip(tmp_path, rows, 8), val_fraction=val_fraction)
    convert_dataset(dataset_id)
    assert rows.dataset(dataset_id).status == DatasetStatus.ready
    return dataset_id


def _events(job_id: str) -> list[tuple[str, dict[str, Any]]]:
    with session_scope() as session:
        found = session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))
        return [(event.kind, event.data) for event in found]


def _models_of(job_id: str) -> list[ModelVersion]:
    with session_scope() as session:
        return list(session.scalars(select(ModelVersion).where(ModelVersion.job_id == job_id)))


# --- SIGKILL mid-conversion -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkilled_conversion_is_finished_once_by_the_next_worker_without_scratch_left(
    database_url: str,
    tmp_path: Path,
    enter: Callable[..., Path],
    rows: Any,
    workers: Callable[[], Any],
    wait: Any,
) -> None:
    data_dir = enter(database_url)  # the embedded queue on SQLite in the data dir
    dataset_id = rows.add_dataset(_plates_zip(tmp_path, rows, 12), val_fraction=0.25)
    folder = data_dir / "datasets" / dataset_id
    send_convert(dataset_id)

    def scratch() -> list[str]:
        return sorted(p.name for p in folder.glob(".convert-*"))

    first = workers()
    # The whole conversion of 12 tiny images takes about 3 s, most of it loading TensorFlow, so the kill comes as
    # soon as the attempt's scratch folder exists: after the conversion began, before it published anything.
    wait(scratch, 120, "converting", first)
    first.kill()
    killed = rows.dataset(dataset_id)
    assert killed.status == DatasetStatus.validating, "killed mid-conversion"
    left = scratch()
    assert len(left) == 1, f"the killed attempt's scratch folder is left behind: {left}"

    second = workers()
    wait(lambda: rows.dataset(dataset_id).status != DatasetStatus.validating, 120, "the conversion's end", second)
    dataset = rows.dataset(dataset_id)
    assert dataset.status == DatasetStatus.ready, dataset.error
    assert (dataset.num_images, dataset.progress) == (12, {"done": 12, "total": 12})
    assert scratch() == [], "no scratch folder is left"
    assert sorted(p.name for p in folder.iterdir()) == ["tfrecords", "upload.zip"]
    assert sorted(p.name for p in (folder / "tfrecords").iterdir()) == [
        "dataset.json",
        "images.jsonl",
        "train-00000-of-00001.tfrecord",
        "val-00000-of-00001.tfrecord",
        "val_annotations.json",
    ]
    log = second.log.read_text(errors="replace")
    assert f"dataset {dataset_id}: its conversion stopped responding" in log, "the sweep sent it again"
    assert f"removing the conversion scratch folder {folder / left[0]}" in log


# --- Redis restarted while work waits in it ---------------------------------------------------------------------


@pytest.mark.slow
def test_work_queued_in_redis_survives_a_restart_that_loses_it_and_runs_once(
    redis_server: Redis,
    pg_url: str,
    tmp_path: Path,
    enter: Callable[..., Path],
    rows: Any,
    workers: Callable[[], Any],
    wait: Any,
) -> None:
    enter(pg_url, redis_server.url)
    # no val split and a training budget spent before the first step: the job still goes training -> evaluating
    # -> exporting -> succeeded with a model, without the minutes that tracing a train step and an evaluation
    # cost on this CPU
    trained_on = _ready_dataset(tmp_path, rows, val_fraction=0.0)
    spec = {"dataset_id": trained_on, "hparams": {"image_size": 128}, "num_steps": 2, "max_train_seconds": 0.001}
    with TestClient(create_app(get_settings())) as client:
        submitted = client.post("/v1/jobs", json={**spec, "batch_size": 2})
        assert submitted.status_code == 202, submitted.text
        archive = _plates_zip(tmp_path, rows, 4, name="more")
        uploaded = client.post("/v1/datasets", files={"file": ("more.zip", archive.read_bytes(), "application/zip")})
        assert uploaded.status_code == 202, uploaded.text
    job_id, dataset_id = submitted.json()["id"], uploaded.json()["id"]
    assert sum(redis_server.client().llen(queue) for queue in QUEUES) == 2, "both messages wait in Redis"

    redis_server.stop()
    redis_server.start()
    assert redis_server.client().dbsize() == 0, "the restart lost the queued messages"

    worker = workers()
    wait(lambda: rows.job(job_id).status in (JobStatus.succeeded, JobStatus.failed), 400, "the job's end", worker)
    wait(lambda: rows.dataset(dataset_id).status != DatasetStatus.validating, 60, "the conversion", worker)
    job = rows.job(job_id)
    assert job.status == JobStatus.succeeded, job.error
    assert job.attempts == 1, "run once"
    events = _events(job_id)
    assert [data["status"] for kind, data in events if kind == "state"] == [
        "queued",
        "training",
        "evaluating",
        "exporting",
        "succeeded",
    ]
    assert [data["message"] for kind, data in events if kind == "log"].count(UNCLAIMED_MESSAGE) == 1
    assert [model.id for model in _models_of(job_id)] == [job.model_id]
    weights = layout.run_dir(get_settings(), job_id) / WEIGHTS_DIR
    assert list(weights.glob("*.index")), "the time budget ended the job like its planned steps: final weights"
    assert rows.dataset(dataset_id).status == DatasetStatus.ready


# --- PostgreSQL stopped and started while the API is polled -----------------------------------------------------


class Poller(threading.Thread):
    """GETs paths in turn until stopped, recording (path, status, body, seconds) of every answer."""

    def __init__(self, client: TestClient, paths: list[str]) -> None:
        super().__init__(daemon=True)
        self.client, self.paths = client, paths
        self.answers: list[tuple[str, int, Any, float]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            for path in self.paths:
                began = time.monotonic()
                try:
                    response = self.client.get(path)
                    answer = (path, response.status_code, response.json(), time.monotonic() - began)
                except Exception as err:  # an exception the app let out: recorded as status 0, not a dead thread
                    answer = (path, 0, f"{type(err).__name__}: {err}", time.monotonic() - began)
                self.answers.append(answer)
            time.sleep(0.05)

    def recovered(self, since: int) -> bool:
        """Every path answered 200 after answer number `since`."""
        return {path for path, code, _, _ in self.answers[since:] if code == 200} == set(self.paths)


@pytest.mark.slow
def test_api_answers_503_while_postgres_is_down_and_200_after_without_a_restart(
    postgres_server: Postgres,
    pg_url: str,
    tmp_path: Path,
    enter: Callable[..., Path],
    rows: Any,
) -> None:
    data_dir = enter(pg_url)
    job_id = rows.add_job(rows.add_dataset(rows.zip_folder(data_dir, tmp_path / "empty.zip")), {}, {"num_steps": 1})
    paths = [f"/v1/jobs/{job_id}", "/readyz"]
    with TestClient(create_app(get_settings())) as client:
        assert [client.get(path).status_code for path in paths] == [200, 200]
        poller = Poller(client, paths)
        poller.start()
        try:
            time.sleep(0.5)
            postgres_server.stop()
            try:
                down_from = len(poller.answers)
                deadline = time.monotonic() + 30
                while sum(code == 503 for _, code, _, _ in poller.answers[down_from:]) < 6:
                    assert time.monotonic() < deadline, f"no 503 while PostgreSQL is down: {poller.answers[-4:]}"
                    time.sleep(0.1)
            finally:
                postgres_server.start()
            up_from = len(poller.answers)
            deadline = time.monotonic() + 30
            while not poller.recovered(up_from):
                assert time.monotonic() < deadline, f"the API did not recover: {poller.answers[-4:]}"
                time.sleep(0.1)
        finally:
            poller.halt.set()
            poller.join(timeout=30)
    answers = poller.answers
    faults = [answer for answer in answers if answer[1] not in (200, 503)]
    assert not faults, f"never a 500 nor an exception out of the app: {faults}"
    assert {code for _, code, _, _ in answers} == {200, 503}
    assert max(seconds for *_, seconds in answers) < 6, "no request hangs while the database is down"
    down = [(path, body) for path, code, body, _ in answers if code == 503]
    job_answers = [body for path, body in down if path == paths[0]]
    assert job_answers, "GET /v1/jobs/{id} answered 503 during the outage"
    assert all("database is unavailable; try again shortly" in body["detail"] for body in job_answers)
    ready_answers = [body for path, body in down if path == "/readyz"]
    assert ready_answers, "/readyz answered 503 during the outage"
    assert all(body["status"] == "unavailable" and body["database"] != "ok" for body in ready_answers)
    assert answers[-1][1] == 200


# --- a full data volume --------------------------------------------------------------------------------------------


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs mounted as the data dir: a file system that really fills up (unmounted at the end)."""
    mount = tmp_path / "var"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True)
    assert mounted.returncode == 0, f"cannot mount a tmpfs (needs root): {mounted.stderr.decode()}"
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=True)


def _fill(volume: Path, leave_bytes: int) -> Path:
    """Take all but leave_bytes of the volume's free space with one file; returns it."""
    stats = os.statvfs(volume)
    filler = volume / "filler"
    with filler.open("wb") as handle:
        os.posix_fallocate(handle.fileno(), 0, stats.f_bavail * stats.f_frsize - leave_bytes)
    return filler


def _incompressible_zip(size: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data/images/noise.jpg", os.urandom(size))
    return buffer.getvalue()


@pytest.mark.slow
def test_tensorflow_checkpoint_on_a_full_volume_reads_as_disk_full_not_out_of_memory(small_volume: Path) -> None:
    import tensorflow as tf

    _fill(small_volume, 2**20)
    state = tf.train.Checkpoint(weights=tf.Variable(tf.zeros([2**20])))  # 4 MiB
    with pytest.raises(tf.errors.ResourceExhaustedError) as raised:
        tf.train.CheckpointManager(state, str(small_volume / "checkpoints"), max_to_keep=1).save()
    assert internal_error(raised.value) == disk_full_message("running the job", "submit the job again")


@pytest.mark.slow
def test_full_data_volume_fails_the_job_with_advice_and_uploads_get_507(
    database_url: str,
    small_volume: Path,
    tmp_path: Path,
    enter: Callable[..., Path],
    rows: Any,
) -> None:
    enter(database_url, f"sqla+sqlite:///{tmp_path / 'broker.db'}", small_volume)
    dataset_id = _ready_dataset(tmp_path, rows)
    options = {"num_steps": 4, "batch_size": 2, "checkpoint_every": 2, "bn_recalibration_batches": 0}
    job_id = rows.add_job(dataset_id, {}, options)
    filler = _fill(small_volume, 0)

    run_job(job_id)  # the task's body in this process: the run's first file, config.yaml, finds the volume full
    job = rows.job(job_id)
    assert job.status == JobStatus.failed
    assert job.error is not None
    assert job.error.startswith("no space left on the data volume (EFFDET_DATA_DIR) while running the job; ")
    assert job.error.endswith("(delete datasets, runs or models you no longer need), then submit the job again")
    assert _models_of(job_id) == []
    assert list((small_volume / "models").glob("*")) == [], "no half-written model"

    with TestClient(create_app(get_settings())) as client:
        shown = client.get(f"/v1/jobs/{job_id}")
        assert shown.status_code == 200
        assert (shown.json()["status"], shown.json()["error"]) == ("failed", job.error)
        assert client.get("/v1/models").json()["count"] == 0

        archive = _incompressible_zip(4 * 2**20)
        full = client.post("/v1/datasets", files={"file": ("big.zip", archive, "application/zip")})
        assert full.status_code == 507, full.text
        assert full.json()["detail"].startswith("no space left on the data volume (EFFDET_DATA_DIR)")
        assert "free space there" in full.json()["detail"]
        assert list((small_volume / "uploads").iterdir()) == [], "the partial upload is removed"
        assert client.get("/v1/datasets").json()["count"] == 1
        assert sorted(p.name for p in (small_volume / "datasets").iterdir()) == [dataset_id]

        filler.unlink()
        again = client.post("/v1/datasets", files={"file": ("big.zip", archive, "application/zip")})
        assert again.status_code == 202, again.text
