"""Deleting jobs, models, evaluations and datasets (files and rows, refused while busy or still needed, finished
by recovery after a crash in the middle), and Idempotency-Key on the creating POSTs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update
from typer.testing import CliRunner

from app.cli import app as cli
from core import deletion
from core.layout import evaluation_dir, run_dir
from core.tables import (
    IDEMPOTENCY_WINDOW,
    Dataset,
    Evaluation,
    EvaluationStatus,
    IdempotentRequest,
    Job,
    JobStatus,
    ModelVersion,
    utcnow,
)


def _evaluation(service: Any, model: str, dataset: str, status: str = EvaluationStatus.succeeded) -> str:
    row = Evaluation(
        model_id=model,
        dataset_id=dataset,
        split="val",
        format="saved_model",
        score_threshold=0.4,
        status=status,
        cancel_requested=False,
        attempts=0,
    )
    service.add(row)
    evaluation_dir(service.settings, row.id).mkdir(parents=True)
    (evaluation_dir(service.settings, row.id) / "images.json").write_text("[]")
    return row.id


def _model_folder(service: Any) -> Path:
    folder = service.data_dir / "models" / "m"
    (folder / "saved_model").mkdir(parents=True)
    (folder / "saved_model" / "saved_model.pb").write_bytes(b"pb")
    return folder


def test_delete_models_jobs_and_datasets_in_order(service: Any) -> None:
    client = service.client
    dataset = service.dataset()
    running = service.job(dataset, status=JobStatus.training)
    done = service.job(dataset, status=JobStatus.succeeded)
    run_dir(service.settings, done).mkdir(parents=True)
    service.event(done, "log", message="hello")
    folder = _model_folder(service)
    model = service.model(done, folder)
    evaluation = _evaluation(service, model, dataset)
    busy = _evaluation(service, model, dataset, EvaluationStatus.running)

    answer = client.delete(f"/v1/jobs/{running}")
    assert answer.status_code == 409
    assert "cancel it first" in answer.json()["detail"]
    answer = client.delete(f"/v1/jobs/{done}")
    assert answer.status_code == 409
    assert model in answer.json()["detail"]
    answer = client.delete(f"/v1/models/{model}")
    assert answer.status_code == 409
    assert busy in answer.json()["detail"]
    assert client.delete(f"/v1/evaluations/{busy}").status_code == 409
    with service.session() as session:
        session.get(Evaluation, busy).status = EvaluationStatus.cancelled  # type: ignore[union-attr]
        session.commit()

    assert client.delete(f"/v1/evaluations/{evaluation}").status_code == 204
    assert not evaluation_dir(service.settings, evaluation).exists()
    assert client.get(f"/v1/evaluations/{evaluation}").status_code == 404
    assert client.delete(f"/v1/models/{model}").status_code == 204, "takes its remaining evaluation with it"
    assert not folder.exists()
    assert service.row(Evaluation, busy) is None
    assert service.row(Job, done).model_id is None
    assert client.delete(f"/v1/datasets/{dataset}").status_code == 409, "jobs still use it"
    assert client.delete(f"/v1/jobs/{done}").status_code == 204
    assert not run_dir(service.settings, done).exists()
    assert client.post(f"/v1/jobs/{running}/cancel").status_code in (200, 202)
    with service.session() as session:
        session.get(Job, running).status = JobStatus.cancelled  # type: ignore[union-attr]
        session.commit()
    assert client.delete(f"/v1/jobs/{running}").status_code == 204
    assert client.delete(f"/v1/datasets/{dataset}").status_code == 204, "deletable once its jobs are deleted"
    assert service.count(Dataset) == service.count(Job) == service.count(ModelVersion) == 0
    assert client.delete(f"/v1/datasets/{dataset}").status_code == 404


def test_a_deletion_interrupted_after_marking_is_hidden_and_finished_by_recovery(service: Any) -> None:
    dataset = service.dataset()
    job = service.job(dataset, status=JobStatus.succeeded)
    folder = _model_folder(service)
    model = service.model(job, folder)
    evaluation = _evaluation(service, model, dataset)
    with service.session() as session:
        row = session.get(ModelVersion, model)
        assert row is not None
        deletion.mark(session, deletion.plan(session, row))  # the API process dies here: files and rows remain
    assert folder.exists()
    assert service.client.get(f"/v1/models/{model}").status_code == 404
    assert service.client.get("/v1/models").json()["count"] == 0
    assert service.client.get(f"/v1/evaluations/{evaluation}").status_code == 404
    assert deletion.purge_marked(service.settings, timedelta(seconds=0)) == 2
    assert not folder.exists()
    assert not evaluation_dir(service.settings, evaluation).exists()
    assert service.row(ModelVersion, model) is None
    assert service.row(Evaluation, evaluation) is None
    assert service.row(Job, job) is not None, "only what was marked goes"


def test_idempotency_key_returns_the_first_job_and_refuses_another_body(service: Any) -> None:
    client = service.client
    dataset = service.dataset()
    body = {"dataset_id": dataset, "num_steps": 1}
    first = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "retry-1"})
    assert first.status_code == 202, first.text
    again = client.post("/v1/jobs", json=dict(reversed(body.items())), headers={"Idempotency-Key": "retry-1"})
    assert again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert service.count(Job) == 1
    assert service.broker_messages().count("worker.tasks.run_job") == 1
    other = client.post("/v1/jobs", json={**body, "num_steps": 2}, headers={"Idempotency-Key": "retry-1"})
    assert other.status_code == 422
    assert "different request" in other.json()["detail"]
    fresh = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "retry-2"})
    assert fresh.json()["id"] != first.json()["id"]
    assert client.post("/v1/jobs", json=body).json()["id"] not in (first.json()["id"], fresh.json()["id"])
    bad = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "has space"})
    assert bad.status_code == 422
    assert "Idempotency-Key" in bad.json()["detail"]
    assert service.count(Job) == 3
    assert service.count(IdempotentRequest) == 2
    with service.session() as session:
        session.execute(
            update(IdempotentRequest)
            .where(IdempotentRequest.key == "retry-1")
            .values(created_at=utcnow() - IDEMPOTENCY_WINDOW - timedelta(minutes=1))
        )
        session.commit()
    assert deletion.drop_expired_requests() == 1, "the recovery sweep drops what no retry may use any more"
    assert service.count(IdempotentRequest) == 1


def test_idempotency_key_on_uploads_and_evaluations(service: Any, zip_bytes: Any) -> None:
    client = service.client
    archive = zip_bytes({"a.xml": b"<annotation/>", "a.jpg": b"not checked yet"})
    key = {"Idempotency-Key": "upload-1"}
    first = client.post("/v1/datasets", files={"file": ("a.zip", archive)}, data={"name": "x"}, headers=key)
    assert first.status_code == 202, first.text
    again = client.post("/v1/datasets", files={"file": ("a.zip", archive)}, data={"name": "x"}, headers=key)
    assert again.json()["id"] == first.json()["id"]
    assert service.count(Dataset) == 1
    renamed = client.post("/v1/datasets", files={"file": ("a.zip", archive)}, data={"name": "y"}, headers=key)
    assert renamed.status_code == 422
    assert [path.name for path in (service.data_dir / "datasets").iterdir()] == [first.json()["id"]]
    assert not any((service.data_dir / "uploads").iterdir()), "no second upload kept"

    dataset = service.dataset(val_images=2)
    job = service.job(dataset, status=JobStatus.succeeded)
    model = service.model(job, _model_folder(service))
    made = client.post(f"/v1/models/{model}/evaluations", json={}, headers={"Idempotency-Key": "eval-1"})
    assert made.status_code == 202, made.text
    remade = client.post(f"/v1/models/{model}/evaluations", json={}, headers={"Idempotency-Key": "eval-1"})
    assert remade.json()["id"] == made.json()["id"]
    assert service.count(Evaluation) == 1


def test_keys_commands_create_list_and_revoke(service: Any) -> None:
    runner = CliRunner()
    made = runner.invoke(cli, ["keys", "create", "camera-7", "--owner", "plates", "--scope", "predict"])
    assert made.exit_code == 0, made.output
    key = made.output.strip().splitlines()[-1]
    listed = runner.invoke(cli, ["keys", "list"])
    assert "camera-7\tplates\tpredict" in listed.output
    auth = {"Authorization": f"Bearer {key}"}
    assert service.client.get("/v1/models", headers=auth).status_code == 200
    assert service.client.get("/v1/jobs", headers=auth).status_code == 403
    assert runner.invoke(cli, ["keys", "revoke", "camera-7"]).exit_code == 0
    assert service.client.get("/v1/models", headers=auth).status_code == 401
    missing = runner.invoke(cli, ["keys", "revoke", "camera-7"])
    assert missing.exit_code == 1
    assert "no key named" in missing.output
    assert runner.invoke(cli, ["keys", "create", "x", "--owner", "bad owner"]).exit_code == 1
