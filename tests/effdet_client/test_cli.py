"""`effdet-client` against the in-process service: --json output that parses, the API's 4xx detail on stderr,
exit status 1 for API errors and jobs that did not succeed, 2 for usage errors."""

from __future__ import annotations

import json
from pathlib import Path

from core.tables import JobStatus
from tests.app.conftest import Service
from tests.effdet_client.conftest import Cli


def test_unknown_dataset_exits_1_with_the_404_message(cli: Cli) -> None:
    result = cli("datasets", "show", "no-such-dataset")
    assert result.exit_code == 1
    assert "404" in result.stderr
    assert "no-such-dataset" in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.output


def test_rejected_submission_prints_each_problem_of_the_422(cli: Cli, sqlite_service: Service, tmp_path: Path) -> None:
    hparams = tmp_path / "hparams.yaml"
    hparams.write_text("image_size: 100\nlearning_rat: 0.1\n")
    result = cli("jobs", "submit", "--dataset", sqlite_service.dataset(), "--hparams", hparams, "--num-steps", 2)
    assert result.exit_code == 1, result.output
    assert "422" in result.stderr
    lines = [line.strip() for line in result.stderr.splitlines()]
    assert any(line.startswith("hparams_yaml") and "learning_rate" in line for line in lines), result.stderr
    assert any(line.startswith("hparams_yaml") and "image_size" in line for line in lines), result.stderr


def test_submit_then_list_and_show_as_json(cli: Cli, sqlite_service: Service) -> None:
    dataset_id = sqlite_service.dataset()
    args = ("--dataset", dataset_id, "--hparams", "image_size=128", "--num-steps", 4, "--batch-size", 2)
    submitted = json.loads(cli("jobs", "submit", *args, "--json").stdout)
    assert (submitted["status"], submitted["options"]["num_steps"]) == ("queued", 4)
    assert submitted["config"]["image_size"] == 128
    listed = json.loads(cli("jobs", "list", "--json").stdout)
    assert [job["id"] for job in listed["items"]] == [submitted["id"]]
    assert submitted["id"] in cli("jobs", "list").stdout  # the table keeps whole ids, even 80 columns wide
    shown = json.loads(cli("datasets", "show", dataset_id, "--json").stdout)
    assert shown["label_map"] == {"1": "raccoon"}
    human = cli("jobs", "show", submitted["id"])
    assert human.exit_code == 0
    assert f"job {submitted['id']}" in human.stdout
    cancelled = json.loads(cli("jobs", "cancel", submitted["id"], "--json").stdout)
    assert cancelled["status"] == "cancelled"
    assert cli("datasets", "delete", dataset_id).exit_code == 1, "a job still uses it: the 409 is printed"
    assert cli("jobs", "delete", submitted["id"]).stdout.strip() == f"deleted job {submitted['id']}"
    assert cli("datasets", "delete", dataset_id).exit_code == 0
    assert json.loads(cli("jobs", "list", "--json").stdout)["count"] == 0


def test_submit_with_an_idempotency_key_and_callbacks_then_webhooks(cli: Cli, sqlite_service: Service) -> None:
    dataset_id = sqlite_service.dataset()
    args = ("--dataset", dataset_id, "--num-steps", 1, "--idempotency-key", "ci-run-7", "--json")
    callback = ("--callback-url", "http://10.0.0.1/hook")
    refused = cli("jobs", "submit", *args, *callback)
    assert refused.exit_code == 1
    assert "EFFDET_WEBHOOK_ALLOWED_NETWORKS" in refused.stderr
    first = json.loads(cli("jobs", "submit", *args).stdout)
    assert json.loads(cli("jobs", "submit", *args).stdout)["id"] == first["id"], "a retried CI step makes no second job"
    assert "is not an http" in cli("webhooks", "add", "ftp://example.com/").stderr
    assert json.loads(cli("webhooks", "list", "--json").stdout)["count"] == 0


def test_cancel_keep_model_asks_a_running_job_to_finish_now(cli: Cli, sqlite_service: Service) -> None:
    job_id = sqlite_service.job(sqlite_service.dataset(), JobStatus.training)
    asked = json.loads(cli("jobs", "cancel", job_id, "--keep-model", "--json").stdout)
    assert (asked["status"], asked["finish_requested"]) == ("training", True)


def test_upload_with_progress_then_list_as_a_table(cli: Cli, raccoon_folder: Path) -> None:
    result = cli("datasets", "upload", raccoon_folder, "--format", "voc")
    assert result.exit_code == 0, result.output
    assert "validating" in result.stdout
    assert "uploading raccoons" in result.stderr
    dataset_id = result.stdout.split()[2].rstrip(":")  # "dataset raccoons <id>: validating (voc)"
    assert dataset_id in cli("datasets", "list").stdout


def test_watch_exits_1_for_a_failed_job_and_0_for_a_succeeded_one(cli: Cli, sqlite_service: Service) -> None:
    dataset_id = sqlite_service.dataset()
    failed = sqlite_service.job(dataset_id, JobStatus.failed)
    sqlite_service.event(failed, "progress", step=1, total_steps=4, loss=2.0, learning_rate=0.01, eta_seconds=3)
    sqlite_service.event(failed, "state", status="failed", error="loss became NaN")
    result = cli("jobs", "watch", failed)
    assert result.exit_code == 1
    assert "failed" in result.stdout
    succeeded = sqlite_service.job(dataset_id, JobStatus.succeeded)
    sqlite_service.event(succeeded, "state", status="succeeded")
    result = cli("jobs", "watch", succeeded, "--json")
    assert result.exit_code == 0
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["data"]["status"] for e in events] == ["succeeded"]


def test_plot_writes_what_exists_and_says_what_is_missing(cli: Cli, sqlite_service: Service, tmp_path: Path) -> None:
    job_id = sqlite_service.job(sqlite_service.dataset(), JobStatus.training)
    assert cli("jobs", "plot", job_id, "--output", tmp_path).exit_code == 1  # nothing to draw yet
    sqlite_service.event(job_id, "progress", step=1, total_steps=4, loss=2.0, learning_rate=0.01)
    result = cli("jobs", "plot", job_id, "--output", tmp_path, "--name", "loss", "--name", "pr_curve", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["written"] == {"loss": str(tmp_path / f"job-{job_id}-loss.png")}
    assert "yet (training)" in report["skipped"]["pr_curve"]
    assert (tmp_path / f"job-{job_id}-loss.png").read_bytes().startswith(b"\x89PNG")
    assert cli("jobs", "plot", "no-such-job").exit_code == 1


def test_usage_errors_exit_2(cli: Cli, tmp_path: Path) -> None:
    assert cli("jobs", "submit", "--dataset", "x", "--hparams", tmp_path / "missing.yaml").exit_code == 2
    assert cli("jobs", "plot", "x", "--name", "accuracy").exit_code == 2
    assert cli("datasets", "upload", tmp_path / "missing").exit_code == 2
    assert cli("models", "download", "x", "--format", "onnx").exit_code == 2
