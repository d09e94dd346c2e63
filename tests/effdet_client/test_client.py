"""effdet_client.Client against the in-process service: typed answers, the API's 4xx detail carried by ApiError,
folder uploads zipped on the fly with progress, event streams, plots and downloads."""

from __future__ import annotations

import io
import socket
import zipfile
from pathlib import Path

import pytest

from core.tables import JobStatus
from effdet_client import ApiError, Client, ClientError, JobSubmission, ServiceUnreachableError
from tests.app.conftest import Service


def test_unknown_ids_raise_api_error_with_the_servers_detail(client: Client) -> None:
    with pytest.raises(ApiError) as caught:
        client.get_job("no-such-job")
    assert caught.value.status_code == 404
    assert "no-such-job" in str(caught.value.detail)
    assert str(caught.value).startswith("GET /v1/jobs/no-such-job -> 404:")


def test_rejected_submission_lists_every_problem(client: Client, sqlite_service: Service) -> None:
    submission = JobSubmission(
        dataset_id=sqlite_service.dataset(), hparams={"image_size": 100, "learning_rat": 0.1}, num_steps=2
    )
    with pytest.raises(ApiError) as caught:
        client.submit_job(submission)
    assert caught.value.status_code == 422
    problems = caught.value.problems
    assert len(problems) >= 2
    assert any(p.startswith("hparams") and "learning_rate" in p for p in problems), problems
    assert any("image_size" in p for p in problems), problems


def test_upload_of_a_folder_zips_it_and_reports_progress(client: Client, raccoon_folder: Path) -> None:
    seen: list[tuple[int, int]] = []
    dataset = client.upload_dataset(raccoon_folder, val_fraction=0.3, on_progress=lambda d, t: seen.append((d, t)))
    assert (dataset.name, dataset.status, dataset.format) == ("raccoons", "validating", "auto")
    assert seen[-1][0] == seen[-1][1] > 0
    assert client.get_dataset(dataset.id).id == dataset.id
    assert [d.id for d in client.list_datasets().items] == [dataset.id]


def test_upload_of_a_missing_path_or_a_bad_zip_says_what_is_wrong(client: Client, tmp_path: Path) -> None:
    with pytest.raises(ClientError, match="neither a folder nor a zip"):
        client.upload_dataset(tmp_path / "missing.zip")
    not_a_zip = tmp_path / "notes.zip"
    not_a_zip.write_bytes(b"not a zip")
    with pytest.raises(ApiError) as caught:
        client.upload_dataset(not_a_zip)
    assert caught.value.status_code == 422


def test_watch_replays_events_of_a_finished_job(client: Client, sqlite_service: Service) -> None:
    job_id = sqlite_service.job(sqlite_service.dataset(), JobStatus.failed)
    sqlite_service.event(job_id, "progress", step=1, total_steps=2, loss=1.5)
    sqlite_service.event(job_id, "state", status="failed", error="loss became NaN at step 2")
    kinds: list[str] = []
    job = client.watch_job(job_id, lambda event: kinds.append(event.kind))
    assert job.status == "failed"
    assert job.finished
    assert kinds == ["progress", "state"]


def test_plot_returns_png_bytes_and_409_until_there_is_data(client: Client, sqlite_service: Service) -> None:
    job_id = sqlite_service.job(sqlite_service.dataset(), JobStatus.training)
    with pytest.raises(ApiError) as caught:
        client.plot(job_id, "loss")
    assert caught.value.status_code == 409
    sqlite_service.event(job_id, "progress", step=1, total_steps=2, loss=1.5, learning_rate=0.01)
    assert client.plot(job_id, "loss").startswith(b"\x89PNG")


def test_download_writes_the_servers_file_name_atomically(
    client: Client, sqlite_service: Service, tmp_path: Path
) -> None:
    job_id = sqlite_service.job(sqlite_service.dataset(), JobStatus.succeeded)
    folder = tmp_path / "model"
    (folder / "saved_model").mkdir(parents=True)
    (folder / "saved_model" / "saved_model.pb").write_bytes(b"graph" * 1000)
    model_id = sqlite_service.model(job_id, folder)
    target = tmp_path / "downloads"
    target.mkdir()
    path = client.download_model(model_id, target)
    assert path == target / "efficientdet-d0-v1.zip"
    assert zipfile.ZipFile(io.BytesIO(path.read_bytes())).namelist() == ["efficientdet-d0-v1/saved_model.pb"]
    with pytest.raises(ApiError, match="not exported as tflite"):
        client.download_model(model_id, target, format="tflite")
    assert sorted(p.name for p in target.iterdir()) == ["efficientdet-d0-v1.zip"]


def test_a_service_that_is_not_running_is_reported_with_the_url() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with Client(url) as client, pytest.raises(ServiceUnreachableError, match=url):
        client.list_jobs()
