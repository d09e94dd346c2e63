"""Job submission (validated in full, resolved config stored), listing, events, logs and cancellation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.tables import DatasetStatus, Job, JobEvent, JobStatus
from tests.helpers.checkpoints import write_variant_checkpoint


def _submit(service: Any, **body: Any) -> Any:
    return service.client.post("/v1/jobs", json=body)


def _problems(response: Any) -> dict[str, list[str]]:
    assert response.status_code == 422, response.text
    found: dict[str, list[str]] = {}
    for problem in response.json()["detail"]:
        found.setdefault(problem["loc"][-1], []).append(problem["msg"])
    return found


def test_job_validation_reports_every_problem_at_once(service: Any) -> None:
    response = _submit(
        service,
        dataset_id="missing",
        model="efficientdet-d9",
        hparams={"learning_rat": 0.01, "image_size": 500},
        var_freeze_expr="(efficientnet",
        pretrained="imagenet",
    )
    problems = _problems(response)
    assert set(problems) == {"dataset_id", "model", "hparams", "var_freeze_expr", "pretrained"}
    assert "not found" in problems["dataset_id"][0]
    assert "efficientdet-d0" in problems["model"][0]
    assert "efficientdet-d7x" in problems["model"][0]
    hparams = " ".join(problems["hparams"])
    assert "learning_rat" in hparams
    assert "did you mean 'learning_rate'" in hparams
    assert "384 or 512" in hparams
    assert "not a valid regular expression" in problems["var_freeze_expr"][0]
    assert "'imagenet' not found" in problems["pretrained"][0]
    assert service.count(Job) == 0
    assert service.broker_messages() == []


def test_hparams_yaml_is_never_read_as_a_server_path(sqlite_service: Any, tmp_path: Path) -> None:
    secret = tmp_path / "server.yaml"
    secret.write_text("learning_rate: 0.5\n")
    dataset = sqlite_service.dataset()
    problems = _problems(_submit(sqlite_service, dataset_id=dataset, hparams_yaml=str(secret), num_steps=5))
    assert problems["hparams_yaml"] == [
        f"{str(secret)!r} looks like a file name: send the YAML text itself, not a path"
    ]
    assert sqlite_service.count(Job) == 0


def test_job_rejects_freeze_expr_matching_nothing_and_unready_dataset(sqlite_service: Any) -> None:
    dataset = sqlite_service.dataset(status=DatasetStatus.validating)
    problems = _problems(_submit(sqlite_service, dataset_id=dataset, var_freeze_expr="backbone/", num_steps=5))
    assert "still being validated" in problems["dataset_id"][0]
    assert "matches no variable" in problems["var_freeze_expr"][0]


def test_a_segmentation_job_is_refused_while_the_dataset_holds_boxes_only(sqlite_service: Any) -> None:
    dataset = sqlite_service.dataset()
    problems = _problems(_submit(sqlite_service, dataset_id=dataset, hparams={"heads": ["segmentation"]}))
    assert "per-pixel class masks, and the records hold boxes only" in problems["hparams"][0]
    assert sqlite_service.count(Job) == 0


def test_job_rejects_bad_yaml_and_both_step_counts(sqlite_service: Any) -> None:
    dataset = sqlite_service.dataset()
    problems = _problems(
        _submit(sqlite_service, dataset_id=dataset, hparams_yaml="image_size: [1, 2", num_steps=5, num_epochs=1)
    )
    assert "not valid YAML" in problems["hparams_yaml"][0]
    assert "not both" in problems["num_steps"][0]


def test_a_checkpoint_of_another_variant_or_of_none_is_refused_before_queueing(sqlite_service: Any) -> None:
    folder = sqlite_service.data_dir / "checkpoints"
    write_variant_checkpoint(folder / "d1-coco", "efficientdet-d1")
    (folder / "notes.index").write_bytes(b"not an index")
    dataset = sqlite_service.dataset()
    problems = _problems(_submit(sqlite_service, dataset_id=dataset, model="efficientdet-d0", pretrained="d1-coco"))
    (message,) = problems["pretrained"]
    assert "'d1-coco' (tf1-checkpoint) fits efficientdet-d1, not this job's efficientdet-d0" in message
    assert "variables differ, e.g." in message
    problems = _problems(_submit(sqlite_service, dataset_id=dataset, model="efficientdet-d1", pretrained="notes"))
    assert "'notes' (unreadable) cannot be used" in problems["pretrained"][0]
    accepted = _submit(sqlite_service, dataset_id=dataset, model="efficientdet-d1", pretrained="d1-coco", num_steps=1)
    assert accepted.status_code == 202, accepted.text
    assert sqlite_service.client.get("/v1/jobs").json()["count"] == 1, "only the fitting job was queued"


def test_job_accepted_stores_resolved_config(service: Any) -> None:
    write_variant_checkpoint(service.data_dir / "checkpoints" / "d0-coco", "efficientdet-d0")
    dataset = service.dataset()
    response = _submit(
        service,
        dataset_id=dataset,
        model="efficientdet-d0",
        hparams_yaml="image_size: 256x128\nlearning_rate: 0.01\nnms_configs:\n  method: hard\n",
        num_steps=50,
        batch_size=4,
        pretrained="d0-coco",
        var_freeze_expr="(efficientnet|fpn_cells|resample_p6)",
        min_score_thresh=0.3,
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "queued"
    assert job["model"] == "efficientdet-d0"
    config = service.row(Job, job["id"]).config
    assert config["name"] == "efficientdet-d0"
    assert config["image_size"] == "256x128"
    assert config["num_classes"] == 1
    assert config["label_map"] == {"1": "raccoon"}
    assert config["learning_rate"] == 0.01
    assert config["nms_configs"]["method"] == "hard"
    assert config["var_freeze_expr"] == "(efficientnet|fpn_cells|resample_p6)"
    assert config["max_instances_per_image"] == 100
    options = job["options"]
    assert options["num_steps"] == 50
    assert options["batch_size"] == 4
    assert options["pretrained"] == "d0-coco"
    assert options["min_score_thresh"] == 0.3
    assert service.broker_messages() == ["worker.tasks.run_job"]
    events = service.client.get(f"/v1/jobs/{job['id']}/events?follow=false").text
    assert "event: state" in events
    assert '"status":"queued"' in events


def test_job_options_are_effdet_train_options(sqlite_service: Any) -> None:
    from effdet.config import get_config
    from effdet.train import TrainOptions

    dataset = sqlite_service.dataset(val_images=2)
    body = {"num_epochs": 2.5, "max_train_seconds": 60, "eval_every": 20, "checkpoint_every": 40, "seed": 7}
    job = _submit(sqlite_service, dataset_id=dataset, **body).json()
    options = TrainOptions.model_validate({k: v for k, v in job["options"].items() if k in TrainOptions.model_fields})
    assert options.num_epochs == 2.5
    assert options.max_train_seconds == 60
    assert (options.eval_every, options.checkpoint_every, options.seed) == (20, 40, 7)
    assert get_config("efficientdet-d0", job["config"]).to_flat() == job["config"]


def test_eval_every_needs_a_val_split_to_keep_the_best_by(sqlite_service: Any) -> None:
    no_val = sqlite_service.dataset()
    problems = _problems(_submit(sqlite_service, dataset_id=no_val, num_steps=10, eval_every=5))
    assert "no val split" in problems["eval_every"][0]
    assert "val_fraction > 0" in problems["eval_every"][0]
    assert (
        "greater than or equal to 1"
        in _problems(_submit(sqlite_service, dataset_id=no_val, seed=-1, eval_every=0))["eval_every"][0]
    )
    assert sqlite_service.count(Job) == 0


def test_automl_keys_that_change_nothing_are_warned_about_and_batch_size_points_to_its_field(
    sqlite_service: Any,
) -> None:
    dataset = sqlite_service.dataset()
    problems = _problems(_submit(sqlite_service, dataset_id=dataset, hparams={"batch_size": 64}))
    assert problems["hparams"] == [
        "batch_size is a run option here, not a hyperparameter: give it as the job's batch_size field"
    ]
    assert sqlite_service.count(Job) == 0
    hparams_yaml = "grad_checkpoint: true\nsample_image: null\nmap_freq: 3\nlearning_rate: 0.02\n"
    job = _submit(sqlite_service, dataset_id=dataset, hparams_yaml=hparams_yaml, num_steps=5).json()
    warned = [w for w in job["warnings"] if "has no effect here" in w]
    assert [w.split("`")[1] for w in warned] == ["grad_checkpoint", "map_freq"], "sample_image: null asks nothing"
    assert "eval_every" in warned[1]
    assert job["config"]["learning_rate"] == 0.02


def test_list_and_get_jobs(service: Any) -> None:
    dataset = service.dataset()
    queued = service.job(dataset)
    done = service.job(dataset, JobStatus.succeeded)
    listing = service.client.get("/v1/jobs").json()
    assert listing["count"] == 2
    only = service.client.get("/v1/jobs", params={"status": "succeeded"}).json()
    assert [j["id"] for j in only["items"]] == [done]
    assert service.client.get(f"/v1/jobs/{queued}").json()["status"] == "queued"
    assert service.client.get("/v1/jobs/nope").status_code == 404


def test_cancel_queued_job(service: Any) -> None:
    job = service.job(service.dataset())
    response = service.client.post(f"/v1/jobs/{job}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert response.json()["finished_at"] is not None
    row = service.row(Job, job)
    assert row.status == JobStatus.cancelled
    assert row.finished_at is not None
    assert service.client.post(f"/v1/jobs/{job}/cancel").status_code == 409


def test_cancel_running_job_requests_stop(sqlite_service: Any) -> None:
    job = sqlite_service.job(sqlite_service.dataset(), JobStatus.training)
    response = sqlite_service.client.post(f"/v1/jobs/{job}/cancel")
    assert response.status_code == 202
    assert response.json()["status"] == "training"
    assert response.json()["cancel_requested"] is True
    assert sqlite_service.row(Job, job).cancel_requested


def test_finishing_a_running_job_keeps_its_model_and_a_queued_one_is_just_cancelled(sqlite_service: Any) -> None:
    running = sqlite_service.job(sqlite_service.dataset(), JobStatus.training)
    response = sqlite_service.client.post(f"/v1/jobs/{running}/cancel", params={"keep_model": "true"})
    assert response.status_code == 202
    assert (response.json()["finish_requested"], response.json()["cancel_requested"]) == (True, False)
    logs = sqlite_service.client.get(f"/v1/jobs/{running}/events", params={"follow": "false"}).text
    assert "asked to finish now" in logs
    queued = sqlite_service.job(sqlite_service.dataset())
    response = sqlite_service.client.post(f"/v1/jobs/{queued}/cancel", params={"keep_model": "true"})
    assert (response.status_code, response.json()["status"]) == (200, "cancelled")


def _sse_events(text: str) -> list[dict[str, Any]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        events.append({"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])})
    return events


def test_events_stream_of_finished_job_ends(service: Any) -> None:
    job = service.job(service.dataset(), JobStatus.succeeded)
    service.event(job, "state", status="training")
    service.event(job, "progress", step=1, total_steps=2, loss=1.5)
    service.event(job, "state", status="succeeded")
    with service.client.stream("GET", f"/v1/jobs/{job}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _sse_events(response.read().decode())
    assert [e["event"] for e in events] == ["state", "progress", "state"]
    assert events[1]["data"]["data"]["loss"] == 1.5
    later = service.client.get(f"/v1/jobs/{job}/events", headers={"Last-Event-ID": str(events[0]["id"])})
    assert [e["id"] for e in _sse_events(later.text)] == [e["id"] for e in events[1:]]
    after = service.client.get(f"/v1/jobs/{job}/events", params={"after": events[1]["id"]})
    assert [e["data"]["data"] for e in _sse_events(after.text)] == [{"status": "succeeded"}]


def test_events_follow_a_running_job_until_it_ends(sqlite_service: Any) -> None:
    import threading
    import time

    service = sqlite_service
    job = service.job(service.dataset(), JobStatus.training)

    def finish() -> None:
        time.sleep(1.0)
        service.event(job, "progress", step=2)
        with service.session() as session:
            session.get(Job, job).status = JobStatus.succeeded
            session.add(JobEvent(job_id=job, kind="state", data={"status": "succeeded"}))
            session.commit()

    threading.Thread(target=finish).start()
    start = time.monotonic()
    events = _sse_events(service.client.get(f"/v1/jobs/{job}/events").text)
    assert [e["event"] for e in events] == ["progress", "state"]
    assert 0.9 < time.monotonic() - start < 10


def test_logs_download_has_train_log_and_events(sqlite_service: Any) -> None:
    service = sqlite_service
    job = service.job(service.dataset(), JobStatus.failed)
    logs = service.data_dir / "runs" / job / "logs"
    logs.mkdir(parents=True)
    (logs / "train.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    service.event(job, "state", status="failed", error="loss became NaN at step 3; lower learning_rate")
    response = service.client.get(f"/v1/jobs/{job}/logs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert '{"step": 1, "loss": 2.0}' in response.text
    assert "lower learning_rate" in response.text
