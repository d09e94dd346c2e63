"""The service as deployed: the compose file against the settings, the embedded runner (`make run`) starting and
stopping cleanly, and the whole workflow over HTTP through the runner on the local PostgreSQL and Redis with a
real worker process (upload the real raccoon dataset, train, poll, predict, download)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from PIL import Image

from app.settings import Settings
from tests.e2e.conftest import RACCOON, REPO, Runner, alive, descendants, free_port

REDIS_PORT = 6379
POSTGRES = "postgres@127.0.0.1:5432/test"


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


def test_compose_file_agrees_with_settings_and_dockerfile(monkeypatch: pytest.MonkeyPatch) -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "api", "worker"}
    envs = {name: {k: _resolved(v) for k, v in services[name]["environment"].items()} for name in ("api", "worker")}
    for name, env in envs.items():
        unknown = [variable for variable in env if _setting_name(variable) is None]
        assert not unknown, f"{name} sets variables that no setting reads: {unknown}"
        assert {"EFFDET_DATABASE_URL", "EFFDET_BROKER_URL", "EFFDET_DATA_DIR"} <= set(env)
        with monkeypatch.context() as patched:
            for variable, value in env.items():
                patched.setenv(variable, value)
            Settings()  # the values parse as the containers' settings would
    shared = ("EFFDET_DATABASE_URL", "EFFDET_BROKER_URL", "EFFDET_DATA_DIR")
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
    assert mounts["api"][data_dir] == mounts["worker"][data_dir], "API and worker must share the data volume"
    assert mounts["api"][data_dir] in compose["volumes"]
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


# --- the whole workflow on PostgreSQL + Redis ------------------------------------------------------------------


@pytest.fixture
def production_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL schema and an unused Redis database on this machine (started if down; never skipped)."""
    import psycopg
    import redis

    client = redis.Redis(port=REDIS_PORT)
    try:
        client.ping()
    except redis.ConnectionError:
        subprocess.run(["redis-server", "--daemonize", "yes", "--port", str(REDIS_PORT), "--save", ""], check=False)
        time.sleep(1)
        client.ping()  # fails loudly: this test needs the real Redis
    database = next(
        (
            index
            for index in range(15, 0, -1)
            if redis.Redis(port=REDIS_PORT, db=index).dbsize() == 0
            and redis.Redis(port=REDIS_PORT, db=index).set("effdet-test-owner", uuid.uuid4().hex, nx=True, ex=900)
        ),
        None,
    )
    assert database is not None, "no unused Redis database (1-15) on 127.0.0.1:6379"
    try:
        connection = psycopg.connect(f"postgresql://{POSTGRES}", autocommit=True)
    except psycopg.OperationalError:
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=False)
        time.sleep(2)
        connection = psycopg.connect(f"postgresql://{POSTGRES}", autocommit=True)  # fails loudly
    schema = f"e2e_{uuid.uuid4().hex[:12]}"
    with connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield {
            "EFFDET_DATABASE_URL": f"postgresql+psycopg://{POSTGRES}?options=-csearch_path%3D{schema}",
            "EFFDET_BROKER_URL": f"redis://127.0.0.1:{REDIS_PORT}/{database}",
            "EFFDET_DATA_DIR": str(tmp_path / "var"),
            "EFFDET_PROGRESS_INTERVAL_S": "0.5",
            "EFFDET_JOB_LEASE_S": "10",
            "PORT": str(free_port()),
        }
    finally:
        redis.Redis(port=REDIS_PORT, db=database).flushdb()
        with psycopg.connect(f"postgresql://{POSTGRES}", autocommit=True) as cleanup:
            cleanup.execute(f"DROP SCHEMA {schema} CASCADE")


def _raccoon_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for sub in ("images", "annotations"):
            for path in sorted((RACCOON / sub).iterdir()):
                archive.write(path, f"raccoon/{sub}/{path.name}")
    return buffer.getvalue()


def _poll(
    client: httpx.Client, path: str, done: Callable[[dict[str, Any]], bool], timeout: float, runner: Runner
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(path).json()
        if done(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} still {body} after {timeout:.0f} s; runner:\n{runner.tail()}")
        assert runner.process.poll() is None, f"the runner exited:\n{runner.tail()}"
        time.sleep(0.5)


@pytest.mark.slow
def test_upload_train_predict_download_on_postgres_and_redis(production_env: dict[str, str], start_runner: Any) -> None:
    runner = start_runner(production_env)
    client = httpx.Client(base_url=runner.url(), timeout=60)

    upload = client.post(
        "/v1/datasets",
        files={"file": ("raccoon.zip", _raccoon_zip(), "application/zip")},
        data={"name": "raccoons", "format": "auto", "val_fraction": "0.2"},
    )
    assert upload.status_code == 202, upload.text
    dataset_id = upload.json()["id"]
    dataset = _poll(client, f"/v1/datasets/{dataset_id}", lambda d: d["status"] != "validating", 120, runner)
    assert dataset["status"] == "ready", dataset.get("error")
    assert dataset["label_map"] == {"1": "raccoon"}
    assert dataset["num_images"] == 196
    assert dataset["stats"]

    submitted = client.post(
        "/v1/jobs",
        json={
            "dataset_id": dataset_id,
            "model": "efficientdet-d0",
            "hparams": {"image_size": 128},
            "num_steps": 4,
            "batch_size": 2,
        },
    )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    job = _poll(
        client, f"/v1/jobs/{job_id}", lambda j: j["status"] in ("succeeded", "failed", "cancelled"), 300, runner
    )
    assert job["status"] == "succeeded", job.get("error")
    assert job["progress"]["step"] == 4
    assert job["metrics"]["ap"] is not None

    model = client.get(f"/v1/models/{job['model_id']}").json()
    assert (model["version"], model["label_map"]) == (1, {"1": "raccoon"})
    image_path = RACCOON / "images" / "raccoon-1.jpg"
    width, height = Image.open(image_path).size
    predicted = client.post(
        f"/v1/models/{model['id']}/predict",
        files={"file": (image_path.name, image_path.read_bytes(), "image/jpeg")},
        data={"score_threshold": "0.0", "max_detections": "5"},
    )
    assert predicted.status_code == 200, predicted.text
    detections = predicted.json()
    assert 0 < len(detections) <= 5
    for detection in detections:
        xmin, ymin, xmax, ymax = detection["box"]
        assert 0 <= xmin <= xmax <= width
        assert 0 <= ymin <= ymax <= height
        assert detection["label"] == "raccoon"
    download = client.get(f"/v1/models/{model['id']}/download")
    assert download.status_code == 200
    assert any(name.endswith("saved_model.pb") for name in zipfile.ZipFile(io.BytesIO(download.content)).namelist())

    processes = descendants(runner.process.pid)
    runner.interrupt()
    time.sleep(0.5)
    assert not [pid for pid in processes if alive(pid)], runner.tail()
