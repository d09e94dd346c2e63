"""Fixtures of the API tests: a fresh service (data dir, database, SQLite-backed broker) per test, on SQLite and
on the PostgreSQL of this machine, an HTTP client on `create_app`, and row factories."""

from __future__ import annotations

import io
import subprocess
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from app.main import create_app
from core.db import reset_caches
from core.settings import Settings, get_settings
from core.tables import Dataset, DatasetStatus, Job, JobEvent, JobStatus, ModelVersion, utcnow
from tests.cheap import CHEAP
from tests.helpers.reports import one_class_report

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgresql")

LIMITS = {
    "EFFDET_MAX_UPLOAD_BYTES": str(256 * 1024),
    "EFFDET_MAX_UNCOMPRESSED_BYTES": str(1024 * 1024),
    "EFFDET_MAX_FILES": "20",
    "EFFDET_MAX_IMAGE_PIXELS": str(4000 * 4000),
}
"""Small limits so that the over-limit cases are cheap to build."""


def _postgres_reachable() -> bool:
    engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres() -> str:
    """The admin URL of the local PostgreSQL (started if down); a failure, not a skip, when unreachable."""
    if not _postgres_reachable():
        versions = sorted(p.name for p in Path("/etc/postgresql").iterdir()) if Path("/etc/postgresql").is_dir() else []
        for version in versions:
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=False, timeout=60
            )
    if not _postgres_reachable():
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}; start it (pg_ctlcluster ... main start)")
    return PG_ADMIN_URL


@contextmanager
def _fresh_pg_schema(admin_url: str) -> Iterator[str]:
    """A database URL on a new PostgreSQL schema, dropped on exit."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield f"{admin_url}?options=-csearch_path%3D{schema}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def pg_schema(postgres: str) -> Iterator[str]:
    """A database URL on a fresh PostgreSQL schema, dropped after the test."""
    with _fresh_pg_schema(postgres) as url:
        yield url


class Service:
    """One service environment: its settings, a client, and factories for rows and uploads."""

    def __init__(self, data_dir: Path, client: TestClient) -> None:
        self.data_dir = data_dir
        self.client = client
        self.settings: Settings = client.app.state.settings  # type: ignore[attr-defined]
        self.engine = client.app.state.engine  # type: ignore[attr-defined]

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def add(self, *rows: Any) -> None:
        with self.session() as session:
            session.add_all(rows)
            session.commit()

    def dataset(self, status: str = DatasetStatus.ready, owner: str | None = None, val_images: int = 0) -> str:
        """A dataset row as the worker leaves it (ready with a report of one class, 'raccoon')."""
        report = one_class_report(val_images)
        ready = status == DatasetStatus.ready
        row = Dataset(
            owner=owner,
            name="raccoons",
            status=status,
            format="voc",
            val_fraction=0.1,
            upload_bytes=1000,
            num_images=10 if ready else None,
            num_boxes=11 if ready else None,
            label_map={"1": "raccoon"} if ready else None,
            report=report.model_dump(mode="json") if ready else None,
        )
        self.add(row)
        return row.id

    def job(self, dataset_id: str, status: str = JobStatus.queued, owner: str | None = None) -> str:
        """A job row in the given state."""
        finished = status in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)
        row = Job(
            owner=owner,
            dataset_id=dataset_id,
            model_name="efficientdet-d0",
            status=status,
            config={"name": "efficientdet-d0"},
            options={"batch_size": 2},
            cancel_requested=False,
            attempts=0,
            finished_at=utcnow() if finished else None,
        )
        self.add(row)
        return row.id

    def event(self, job_id: str, kind: str, **data: Any) -> None:
        self.add(JobEvent(job_id=job_id, kind=kind, data=data))

    def model(self, job_id: str, path: Path, owner: str | None = None) -> str:
        row = ModelVersion(
            owner=owner, job_id=job_id, name="efficientdet-d0", version=1, path=str(path), label_map={"1": "raccoon"}
        )
        self.add(row)
        return row.id

    def row(self, table: type[Any], row_id: str) -> Any:
        with self.session() as session:
            return session.get(table, row_id)

    def count(self, table: type[Any]) -> int:
        with self.session() as session:
            return session.query(table).count()

    def broker_messages(self) -> list[str]:
        """The task names waiting in the SQLite broker."""
        broker = self.data_dir / "broker.db"
        if not broker.exists():
            return []
        engine = create_engine(f"sqlite:///{broker}")
        with engine.connect() as connection:
            payloads = connection.execute(text("SELECT payload FROM kombu_message")).scalars().all()
        engine.dispose()
        return [p.split('"task": "')[1].split('"')[0] for p in payloads]

    def leftovers(self) -> list[Path]:
        """Files under uploads/ and datasets/ (a rejected upload must leave none)."""
        return [p for folder in ("uploads", "datasets") for p in (self.data_dir / folder).rglob("*")]


def _zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def zip_bytes() -> Any:
    """zip_bytes({name: data}) -> the bytes of a zip holding these files."""
    return _zip_bytes


def start_service(monkeypatch: pytest.MonkeyPatch, data_dir: Path, database_url: str | None, **env: str) -> Service:
    """Point the environment at data_dir (SQLite broker inside it, database_url or SQLite), start an app client."""
    monkeypatch.setenv("EFFDET_DATA_DIR", str(data_dir))
    monkeypatch.setenv("EFFDET_BROKER_URL", f"sqla+sqlite:///{data_dir / 'broker.db'}")
    for name in ("EFFDET_DATABASE_URL", "EFFDET_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    if database_url:
        monkeypatch.setenv("EFFDET_DATABASE_URL", database_url)
    for name, value in {**LIMITS, **env}.items():
        monkeypatch.setenv(name, value)
    reset_caches()
    client = TestClient(create_app(get_settings()))
    client.__enter__()
    return Service(data_dir, client)


def stop_service(service: Service) -> None:
    """Shut the app down (lifespan end) and forget the cached settings and engine."""
    service.client.__exit__(None, None, None)
    reset_caches()


@pytest.fixture
def make_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A factory: make_service(database_url=None, **env) -> Service with its client started."""
    services: list[Service] = []

    def make(database_url: str | None = None, **env: str) -> Service:
        services.append(start_service(monkeypatch, tmp_path / "var", database_url, **env))
        return services[-1]

    yield make
    for service in services:
        stop_service(service)


@pytest.fixture(scope="module")
def module_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One SQLite service shared by a module's tests (those that load a real model once)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        service = start_service(monkeypatch, tmp_path_factory.mktemp("service") / "var", None)
        yield service
        stop_service(service)


@pytest.fixture(scope="module", params=BACKENDS)
def module_backend_service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """One service per backend (SQLite, then PostgreSQL) shared by a module's tests, for many cheap cases."""
    with pytest.MonkeyPatch.context() as monkeypatch, ExitStack() as stack:
        url = (
            stack.enter_context(_fresh_pg_schema(request.getfixturevalue("postgres")))
            if request.param == "postgresql"
            else None
        )
        service = start_service(monkeypatch, tmp_path_factory.mktemp("service") / "var", url)
        yield service
        stop_service(service)


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder holding saved_model/ of an untrained D0 (128 px, class 1 'raccoon'), exported once per
    session: every test that serves a real model shares it."""
    from effdet.config import get_config
    from effdet.export import export_saved_model
    from effdet.model import build_model

    config = get_config("efficientdet-d0", {"image_size": 128, "num_classes": 1, "label_map": {1: "raccoon"}, **CHEAP})
    model = build_model(config)
    folder = tmp_path_factory.mktemp("model")
    export_saved_model(model, config, folder / "saved_model")
    return folder


@pytest.fixture(params=BACKENDS)
def service(request: pytest.FixtureRequest) -> Service:
    """A service on SQLite and on PostgreSQL (the test runs once for each; the schema outlives the client)."""
    url = request.getfixturevalue("pg_schema") if request.param == "postgresql" else None
    return request.getfixturevalue("make_service")(url)


@pytest.fixture
def sqlite_service(make_service: Any) -> Service:
    """A service on SQLite only (for behaviour that does not depend on the database)."""
    return make_service()
