"""Fixtures of the worker tests: a service environment (data dir + SQLite database), row factories and real
Celery worker processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.db import make_engine, reset_caches, session_scope
from core.settings import get_settings
from core.tables import Base, Dataset, Job
from tests.cheap import CHEAP

REPO = Path(__file__).resolve().parents[2]

TEST_ENV = {"EFFDET_JOB_LEASE_S": "5", "EFFDET_PROGRESS_INTERVAL_S": "0.2"}
"""Short lease and progress interval, so recovery and progress show within a test's seconds."""


def create_schema(url: str) -> None:
    """The service's tables on `url`: the Alembic migrations when they exist, else the models' metadata."""
    try:
        from core.db import migrate  # type: ignore[attr-defined]
    except ImportError:
        engine = make_engine(url)
        Base.metadata.create_all(engine)
        engine.dispose()
        return
    migrate(url)


def enter_service(monkeypatch: pytest.MonkeyPatch, data_dir: Path, database_url: str | None = None) -> Path:
    """Point the settings at data_dir (and database_url, default SQLite inside it) and create the schema."""
    monkeypatch.setenv("EFFDET_DATA_DIR", str(data_dir))
    if database_url:
        monkeypatch.setenv("EFFDET_DATABASE_URL", database_url)
    else:
        monkeypatch.delenv("EFFDET_DATABASE_URL", raising=False)
    for name, value in TEST_ENV.items():
        monkeypatch.setenv(name, value)
    reset_caches()
    data_dir.mkdir(parents=True, exist_ok=True)
    create_schema(get_settings().resolved_database_url)
    return data_dir


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh data dir and SQLite database for one test; yields the data dir."""
    yield enter_service(monkeypatch, tmp_path / "var")
    reset_caches()


@pytest.fixture(scope="module")
def module_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One data dir and database shared by a module's tests (for those that train and share a dataset)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield enter_service(monkeypatch, tmp_path_factory.mktemp("service") / "var")
        reset_caches()
    reset_caches()


class Rows:
    """Factories and readers of the service's rows (a fixture, since tests cannot import conftest)."""

    @staticmethod
    def zip_folder(folder: Path, target: Path, top: str | None = None) -> Path:
        """Zip `folder` (under a top folder named `top`, default its own name) to target."""
        top = top or folder.name
        with zipfile.ZipFile(target, "w") as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    archive.write(path, f"{top}/{path.relative_to(folder)}")
        return target

    @staticmethod
    def add_dataset(zip_path: Path, fmt: str = "auto", val_fraction: float = 0.1, **values: Any) -> str:
        """A validating dataset row with its upload at DATA_DIR/datasets/<id>/upload.zip; returns its id."""
        with session_scope() as session:
            dataset = Dataset(name=zip_path.stem, format=fmt, val_fraction=val_fraction, **values)
            session.add(dataset)
            session.flush()
            dataset_id = dataset.id
        folder = get_settings().folder("datasets") / dataset_id
        folder.mkdir(parents=True)
        shutil.copyfile(zip_path, folder / "upload.zip")
        return dataset_id

    @staticmethod
    def add_job(dataset_id: str, hparams: dict[str, Any], options: dict[str, Any], **values: Any) -> str:
        """A queued job on d0 with the given overrides (resolved and stored flat, as the API does); returns its id."""
        from effdet.config import get_config

        config = get_config("efficientdet-d0", {"image_size": 128, "num_classes": 1, **CHEAP, **hparams}).to_flat()
        with session_scope() as session:
            job = Job(dataset_id=dataset_id, model_name="efficientdet-d0", config=config, options=options, **values)
            session.add(job)
            session.flush()
            return job.id

    @staticmethod
    def dataset(dataset_id: str) -> Dataset:
        with session_scope() as session:
            dataset = session.get(Dataset, dataset_id)
            assert dataset is not None
            return dataset

    @staticmethod
    def job(job_id: str) -> Job:
        with session_scope() as session:
            job = session.get(Job, job_id)
            assert job is not None
            return job


@pytest.fixture(scope="session")
def rows() -> type[Rows]:
    """The row factories (stateless; session-scoped so module fixtures can use them too)."""
    return Rows


@pytest.fixture(scope="session")
def use_service() -> Callable[..., Path]:
    """`enter_service(monkeypatch, data_dir, database_url=None)` for tests that set up their own database."""
    return enter_service


class Worker:
    """`celery worker` (prefork, one child) in its own process group, its output in a file."""

    def __init__(self, log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        command = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool=prefork"]
        command += ["--concurrency=1", "--loglevel=INFO", "--without-gossip", "--without-mingle"]
        command += [f"--hostname=test-{uuid.uuid4().hex[:6]}@%h"]
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                command,
                cwd=REPO,
                env={**os.environ, **(env or {})},
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL the worker and its pool child at once (their process group), as a crash would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """Cold shutdown if still running, SIGKILL after 5 s (its work is in the database; a prefork worker with
        TensorFlow loaded sometimes takes 20 s to exit); never leaves a process behind."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGQUIT)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start workers on demand; all of them are stopped at the end."""
    started: list[Worker] = []

    def start(env: dict[str, str] | None = None) -> Worker:
        """A new worker, with `env` over this process's environment (e.g. a data dir of its own)."""
        worker = Worker(tmp_path / f"worker-{len(started) + 1}.log", env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def wait_for(condition: Callable[[], bool], timeout: float, what: str, worker: Worker) -> None:
    """Poll condition() until it holds; fail with the worker's log when it times out or the worker exits."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; worker log:\n{worker.tail()}")
        if worker.process.poll() is not None:
            raise AssertionError(f"the worker exited ({worker.process.returncode}) before {what}:\n{worker.tail()}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def wait() -> Callable[..., None]:
    """`wait(condition, timeout, what, worker)`: see wait_for."""
    return wait_for
