"""The service as deployed: the compose file against the settings and Dockerfile, and the embedded runner
(`make run`) starting and stopping cleanly. The whole workflow through the runner on PostgreSQL and Redis is
tests/e2e/test_journey.py."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from core.settings import Settings
from tests.e2e.conftest import REPO, alive, descendants, free_port

# --- deployment files -----------------------------------------------------------------------------------------


def _setting_name(variable: str) -> str | None:
    """The Settings field an environment variable sets (None when it sets none)."""
    for name, field in Settings.model_fields.items():
        if variable == (field.validation_alias or f"EFFDET_{name.upper()}"):
            return name
    return None


def _resolved(value: str) -> str:
    """A compose value with ${VAR:-default} replaced by its default."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))


STORE_ACCESS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")
STANDARD = {*STORE_ACCESS, "CUDA_VISIBLE_DEVICES"}
"""Variables the containers set that are read by libraries (obstore, CUDA), not by our settings."""


def test_compose_file_agrees_with_settings_and_dockerfile(monkeypatch: pytest.MonkeyPatch) -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "minio", "bucket", "api", "worker"}
    envs = {name: {k: _resolved(v) for k, v in services[name]["environment"].items()} for name in ("api", "worker")}
    for name, env in envs.items():
        unknown = [variable for variable in env if _setting_name(variable) is None and variable not in STANDARD]
        assert not unknown, f"{name} sets variables that no setting reads: {unknown}"
        assert {"EFFDET_DATABASE_URL", "EFFDET_BROKER_URL", "EFFDET_DATA_DIR"} <= set(env)
        with monkeypatch.context() as patched:
            for variable, value in env.items():
                patched.setenv(variable, value)
            Settings()  # the values parse as the containers' settings would
    shared = ("EFFDET_DATABASE_URL", "EFFDET_BROKER_URL", "EFFDET_DATA_DIR", "EFFDET_STORAGE_URL", *STORE_ACCESS)
    assert {k: envs["api"][k] for k in shared} == {k: envs["worker"][k] for k in shared}

    database = httpx.URL(envs["api"]["EFFDET_DATABASE_URL"].replace("postgresql+psycopg", "postgresql"))
    postgres = {k: _resolved(v) for k, v in services["postgres"]["environment"].items()}
    assert (database.host, database.username, database.password, database.path.strip("/")) == (
        "postgres",
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )
    assert httpx.URL(envs["api"]["EFFDET_BROKER_URL"]).host == "redis"

    data_dir = envs["api"]["EFFDET_DATA_DIR"]
    mounts = {name: dict(m.split(":", 1)[::-1] for m in services[name]["volumes"]) for name in ("api", "worker")}
    assert mounts["api"][data_dir] != mounts["worker"][data_dir], "API and worker share no volume: only the store"
    assert {mounts["api"][data_dir], mounts["worker"][data_dir]} <= set(compose["volumes"])
    minio = {k: _resolved(v) for k, v in services["minio"]["environment"].items()}
    assert httpx.URL(envs["api"]["AWS_ENDPOINT_URL"]).host == "minio"
    assert (envs["api"]["AWS_ACCESS_KEY_ID"], envs["api"]["AWS_SECRET_ACCESS_KEY"]) == (
        minio["MINIO_ROOT_USER"],
        minio["MINIO_ROOT_PASSWORD"],
    )
    bucket = httpx.URL(envs["api"]["EFFDET_STORAGE_URL"].replace("s3://", "http://")).host
    assert f"store/{bucket}" in " ".join(services["bucket"]["command"]), "the bucket service makes the bucket"
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in device["capabilities"] for device in devices)
    command = " ".join(services["worker"]["command"])
    assert "celery -A worker.celery_app worker" in command
    assert "--concurrency=1" in command
    assert services["api"]["ports"] == [f"{envs['api']['PORT']}:{envs['api']['PORT']}"]

    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M), "the image runs as a non-root user"
    arguments = set(re.findall(r"^ARG (\w+)", dockerfile, re.M))
    assert {"BASE_IMAGE"} <= arguments
    assert set(services["worker"]["build"]["args"]) <= arguments
    assert "uvicorn app.main:create_app --factory" in dockerfile
    assert f"EFFDET_DATA_DIR={data_dir}" in dockerfile


# --- the runner ------------------------------------------------------------------------------------------------


def test_runner_serves_and_ctrl_c_stops_api_and_worker(tmp_path: Path, start_runner: Any) -> None:
    env = {"EFFDET_DATA_DIR": str(tmp_path / "var"), "PORT": str(free_port())}
    runner = start_runner(env)  # no database or broker URL: SQLite and the SQLite queue in the data dir
    url = runner.url()
    assert url == f"http://127.0.0.1:{env['PORT']}"
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    deadline = time.monotonic() + 60
    while "ready." not in runner.log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"the worker did not become ready:\n{runner.tail()}"
        time.sleep(0.2)
    processes = descendants(runner.process.pid)
    assert len(processes) >= 2, "the worker and its pool child run beside the API"
    assert (tmp_path / "var" / "effdet.db").is_file()
    assert (tmp_path / "var" / "broker.db").is_file()
    runner.interrupt()
    time.sleep(0.5)
    assert not [pid for pid in processes if alive(pid)], f"left running: {processes}\n{runner.tail()}"
