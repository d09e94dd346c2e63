"""Three "machines" that share only PostgreSQL, Redis and an S3-compatible store (moto's server, spoken to over
HTTP as to MinIO or AWS): the API (this process) and two `celery worker` processes, each with its own empty data
dir. A dataset uploaded through the API is converted on one worker; four jobs run on both; the long one's worker
is SIGKILLed mid-training, after a checkpoint reached the store, and the job resumes on the other worker from
that checkpoint and succeeds once. Then every machine's data dir is wiped, and a fresh API process still lists,
predicts with and downloads the model, shows the job's logs and the dataset's images: the local directories
were only caches."""

from __future__ import annotations

import io
import json
import re
import shutil
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from app.main import create_app
from core.db import reset_caches, session_scope
from core.settings import get_settings
from core.store import get_store, run_prefix
from core.tables import FINISHED, DatasetStatus, JobEvent, JobStatus
from tests.cheap import CHEAP
from tests.e2e import conftest as e2e

production_env = e2e.production_env

NUM_IMAGES = 5
LEASE_S = "6"
QUICK = {
    "hparams": {"image_size": 128, **CHEAP},
    "num_steps": 2,
    "batch_size": 2,
    "max_train_seconds": 0.001,
    "export_formats": ["saved_model"],
}
"""A job whose time budget ends it before its first step (as in the race test): it still exports a model."""
LONG = {
    "hparams": {"image_size": 128, **CHEAP},
    "num_steps": 30,
    "batch_size": 2,
    "checkpoint_every": 2,
    "export_formats": ["saved_model"],
}
"""A job long enough to be killed between checkpoints, each of which goes to the store."""
RESUMED = re.compile(r"resumed from the checkpoint at step (\d+)")


@pytest.fixture
def cluster(
    production_env: dict[str, str],
    s3_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    use_service: Callable[..., Path],
    tmp_path: Path,
) -> Iterator[dict[str, str]]:
    """This process as the API machine (its own data dir, the store on); returns the workers' shared settings."""
    use_service(monkeypatch, tmp_path / "api", production_env["EFFDET_DATABASE_URL"])
    shared = {
        "EFFDET_DATABASE_URL": production_env["EFFDET_DATABASE_URL"],
        "EFFDET_BROKER_URL": production_env["EFFDET_BROKER_URL"],
        "EFFDET_STORAGE_URL": s3_env["EFFDET_STORAGE_URL"],
        "EFFDET_JOB_LEASE_S": LEASE_S,
        "EFFDET_PROGRESS_INTERVAL_S": "0.5",
    }
    for name, value in shared.items():
        monkeypatch.setenv(name, value)
    reset_caches()
    yield shared
    reset_caches()


def _until(condition: Callable[[], bool], timeout: float, what: str, workers: list[Any]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            logs = "\n\n".join(f"--- {worker.log.name}:\n{worker.tail(60)}" for worker in workers)
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; worker logs:\n{logs}")
        time.sleep(0.2)


def _messages(job_id: str) -> list[str]:
    with session_scope() as session:
        events = session.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.kind.in_(["log", "state"])).order_by(JobEvent.id)
        )
        return [str(event.data.get("message", event.data.get("status"))) for event in events]


def _holder_log(job_id: str, workers: list[Any]) -> Any:
    """The worker whose log shows it running the job."""
    for worker in workers:
        if f"job {job_id}: attempt" in worker.log.read_text(errors="replace"):
            return worker
    return None


def _written(data_dir: Path) -> set[str]:
    """The top folders of a data dir that hold files."""
    return {path.relative_to(data_dir).parts[0] for path in data_dir.rglob("*") if path.is_file()}


def _jpeg() -> bytes:
    image = io.BytesIO()
    Image.new("RGB", (160, 120), (90, 120, 60)).save(image, format="JPEG")
    return image.getvalue()


@pytest.mark.slow
def test_a_job_resumes_on_another_machine_and_wiping_every_data_dir_loses_nothing(
    cluster: dict[str, str], tmp_path: Path, rows: Any, workers: Callable[..., Any]
) -> None:
    from effdet.data.synthetic import write_dataset

    dirs = [tmp_path / "machine-1", tmp_path / "machine-2"]
    started = [workers({**cluster, "EFFDET_DATA_DIR": str(folder)}) for folder in dirs]
    raw = write_dataset(tmp_path / "plates", NUM_IMAGES, "voc", seed=3)
    archive = rows.zip_folder(raw, tmp_path / "plates.zip")
    with TestClient(create_app(get_settings())) as client:
        uploaded = client.post(
            "/v1/datasets",
            files={"file": ("plates.zip", archive.read_bytes(), "application/zip")},
            data={"val_fraction": "0.2"},
        )
        assert uploaded.status_code == 202, uploaded.text
        dataset_id = uploaded.json()["id"]
        _until(lambda: rows.dataset(dataset_id).status != DatasetStatus.validating, 180, "the conversion", started)
        assert rows.dataset(dataset_id).status == DatasetStatus.ready, rows.dataset(dataset_id).error

        long_id = client.post("/v1/jobs", json={"dataset_id": dataset_id, **LONG}).json()["id"]
        store = get_store(get_settings())
        latest = f"{run_prefix(long_id)}/latest"
        _until(lambda: store.get_text(latest) is not None, 300, "a checkpoint in the store", started)
        victim = _holder_log(long_id, started)
        assert victim is not None
        survivor = next(worker for worker in started if worker is not victim)
        quick_ids = [client.post("/v1/jobs", json={"dataset_id": dataset_id, **QUICK}).json()["id"] for _ in range(3)]
        assert rows.job(long_id).status == JobStatus.training, "killed mid-training"
        victim.kill()
        stored_step = int(str(store.get_text(latest)).split()[0])

        job_ids = [long_id, *quick_ids]
        _until(lambda: all(rows.job(j).status in FINISHED for j in job_ids), 600, "every job's end", [survivor])
        for job_id in job_ids:
            job = rows.job(job_id)
            assert job.status == JobStatus.succeeded, job.error
        messages = _messages(long_id)
        assert messages.count("succeeded") == 1, messages
        resumed = [int(found) for message in messages for found in RESUMED.findall(message)]
        assert resumed == [stored_step], f"resumed once, from the stored checkpoint (step {stored_step}): {messages}"
        assert stored_step >= 2
        assert rows.job(long_id).attempts == 2
        assert [_holder_log(job_id, [survivor]) for job_id in job_ids] == [survivor] * 4, "the rest ran on the other"
        model_id = rows.job(long_id).model_id

    survivor.stop()
    assert _written(get_settings().data_dir) <= {"cache"}, "the API machine keeps nothing but its cache"
    for folder in [*dirs, get_settings().data_dir]:
        shutil.rmtree(folder)  # every machine loses its disk: the store and the database hold everything
    reset_caches()
    with TestClient(create_app(get_settings())) as client:
        assert client.get(f"/v1/models/{model_id}").status_code == 200
        predicted = client.post(
            f"/v1/models/{model_id}/predict",
            files={"file": ("a.jpg", _jpeg(), "image/jpeg")},
            data={"score_threshold": "0"},
        )
        assert predicted.status_code == 200, predicted.text
        downloaded = client.get(f"/v1/models/{model_id}/download")
        assert downloaded.status_code == 200
        assert any(
            name.endswith("saved_model.pb") for name in zipfile.ZipFile(io.BytesIO(downloaded.content)).namelist()
        )
        logs = client.get(f"/v1/jobs/{long_id}/logs")
        assert logs.status_code == 200
        train_log = logs.text.split("# events")[0].splitlines()
        assert train_log[0] == "# train.jsonl", "the training log, from the run's last snapshot in the store"
        assert json.loads(train_log[-1])["step"] == LONG["num_steps"]
        images = client.get(f"/v1/datasets/{dataset_id}/images").json()["items"]
        thumbnail = client.get(f"/v1/datasets/{dataset_id}/images/{images[0]['id']}/thumbnail")
        assert thumbnail.status_code == 200, thumbnail.text
        shown = client.get(f"/v1/models/{model_id}/val-images")
        assert shown.status_code == 200, shown.text
    assert _written(get_settings().data_dir) == {"cache"}, "what the API fetched went into its cache alone"
