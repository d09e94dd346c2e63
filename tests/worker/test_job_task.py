"""The training task in-process on a tiny synthetic dataset: cancel, finish now keeping the model, divergence,
internal errors, deliveries that must not start a job, and a job whose config the worker completes (auto anchors),
whose export tiles and whose model is its best by val AP (eval_every). (A plain job that succeeds, with its metrics
and model version, is proven through a real worker, after a SIGKILL, in test_worker_process.py.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select, update

from core import evaluations, states
from core.db import session_scope
from core.layout import saved_model_dir
from core.states import claim
from core.tables import Dataset, DatasetStatus, Evaluation, EvaluationStatus, Job, JobEvent, JobStatus, ModelVersion
from worker.tasks import convert_dataset, run_evaluation, run_job

FAST = {"batch_size": 2, "bn_recalibration_batches": 0, "progress_interval_s": 0}


@pytest.fixture(scope="module")
def dataset_id(module_service: Path, tmp_path_factory: pytest.TempPathFactory, rows: Any) -> str:
    """12 synthetic plate images (VOC) uploaded as a zip and converted by the task (3 go to val)."""
    from effdet.data.synthetic import write_dataset

    raw = write_dataset(tmp_path_factory.mktemp("synthetic") / "plates", 12, "voc", seed=3)
    dataset = rows.add_dataset(rows.zip_folder(raw, raw.parent / "plates.zip"), val_fraction=0.25)
    convert_dataset(dataset)
    row = rows.dataset(dataset)
    assert row.status == DatasetStatus.ready, row.error
    return dataset


def _events(job_id: str, kind: str) -> list[dict[str, Any]]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(JobEvent.data).where(JobEvent.job_id == job_id, JobEvent.kind == kind).order_by(JobEvent.id)
            )
        )


def _when(condition: Callable[[], bool], action: Callable[[], None], timeout: float = 120) -> threading.Thread:
    """Run `action` in a thread as soon as `condition` holds (what a user's cancel request does)."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not condition():
            time.sleep(0.05)
        action()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_cancel_while_training_ends_cancelled_within_seconds(dataset_id: str, rows: Any) -> None:
    job_id = rows.add_job(dataset_id, {}, {**FAST, "num_steps": 10_000})
    asked: dict[str, float] = {}

    def cancel() -> None:
        with session_scope() as session:
            session.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
        asked["at"] = time.monotonic()

    _when(lambda: rows.job(job_id).status == JobStatus.training, cancel)
    run_job(job_id)
    took = time.monotonic() - asked["at"]
    job = rows.job(job_id)
    assert job.status == JobStatus.cancelled
    assert job.finished_at is not None
    assert took < 15, f"cancel took {took:.1f} s"
    assert [e["status"] for e in _events(job_id, "state")] == ["training", "cancelled"]


@pytest.mark.slow
def test_a_job_asked_to_finish_now_exports_the_weights_so_far_and_succeeds(
    dataset_id: str, rows: Any, module_service: Path
) -> None:
    job_id = rows.add_job(dataset_id, {}, {**FAST, "num_steps": 10_000})

    def finish() -> None:
        with session_scope() as session:
            job = session.get(Job, job_id)
            assert job is not None
            assert not states.cancel_job(session=session, job=job, keep_model=True), "running: asked, not ended"

    def trained_two_steps() -> bool:
        progress = rows.job(job_id).progress
        return progress is not None and progress["step"] >= 2

    _when(trained_two_steps, finish)
    run_job(job_id)
    job = rows.job(job_id)
    assert job.status == JobStatus.succeeded, job.error
    assert 2 <= job.metrics["stopped_at_step"] < 10_000
    assert [e["status"] for e in _events(job_id, "state")] == ["training", "evaluating", "exporting", "succeeded"]
    messages = [e["message"] for e in _events(job_id, "log")]
    assert any(m.startswith("asked to finish now") for m in messages)
    assert f"training finished on request at step {job.metrics['stopped_at_step']} of 10000" in " ".join(messages)
    with session_scope() as session:
        model = session.get(ModelVersion, job.model_id)
        assert model is not None
        assert (saved_model_dir(Path(model.path)) / "saved_model.pb").is_file()
    assert (module_service / "runs" / job_id / "weights").is_dir(), "final weights written, as for a completed run"


@pytest.mark.slow
def test_diverging_job_fails_with_the_step_and_a_fix(dataset_id: str, rows: Any) -> None:
    job_id = rows.add_job(dataset_id, {"learning_rate": 1e12}, {**FAST, "num_steps": 20})
    run_job(job_id)
    job = rows.job(job_id)
    assert job.status == JobStatus.failed
    assert "the loss became" in job.error
    assert "lower learning_rate" in job.error
    assert _events(job_id, "state")[-1] == {"status": "failed", "worker": job.worker, "error": job.error}


def test_unexpected_error_is_one_line_and_its_traceback_is_logged(
    module_service: Path, dataset_id: str, rows: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import effdet.train

    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(effdet.train, "train", explode)
    job_id = rows.add_job(dataset_id, {}, {**FAST, "num_steps": 4})
    run_job(job_id)
    job = rows.job(job_id)
    assert job.status == JobStatus.failed
    assert job.error == "internal error: RuntimeError: disk on fire; see the job logs"
    log = (module_service / "runs" / job_id / "logs" / "worker.log").read_text()
    assert "Traceback" in log
    assert "in explode" in log


def test_cancelled_queued_job_never_starts(dataset_id: str, rows: Any) -> None:
    job_id = rows.add_job(dataset_id, {}, {**FAST, "num_steps": 4}, cancel_requested=True)
    run_job(job_id)
    job = rows.job(job_id)
    assert (job.status, job.attempts, job.worker) == (JobStatus.cancelled, 0, None)


def test_delivery_of_a_job_held_by_a_live_worker_is_dropped(dataset_id: str, rows: Any) -> None:
    job_id = rows.add_job(dataset_id, {}, {**FAST, "num_steps": 4})
    assert claim(job_id, "other-host:1", lease_s=60) == 1
    run_job(job_id)
    job = rows.job(job_id)
    assert (job.status, job.attempts, job.worker) == (JobStatus.training, 1, "other-host:1")


def test_redelivery_of_a_finished_job_does_nothing(dataset_id: str, rows: Any) -> None:
    job_id = rows.add_job(dataset_id, {}, {**FAST, "num_steps": 4}, status=JobStatus.succeeded.value)
    run_job(job_id)
    job = rows.job(job_id)
    assert (job.status, job.attempts, job.worker) == (JobStatus.succeeded, 0, None)


def test_a_tiled_job_with_auto_anchors_records_them_and_serves_tiled_predictions_from_its_best_step(
    module_service: Path, dataset_id: str, rows: Any
) -> None:
    from effdet.config import Config
    from effdet.predict import load_exported, predict_images
    from tests.effdet.test_export import scene

    hparams = {"aspect_ratios": "auto", "anchor_scale": "auto", "tiles": 192}
    job_id = rows.add_job(dataset_id, hparams, {**FAST, "num_steps": 3, "eval_every": 2})
    run_job(job_id)
    job = rows.job(job_id)
    assert job.status == JobStatus.succeeded, job.error
    assert job.metrics is not None
    assert job.metrics["best_step"] == 2, "eval_every at 2 of 3 steps: the model is step 2"
    assert "the model is the best by val AP, from step 2" in [e.get("message") for e in _events(job_id, "log")]
    [event] = [e for e in _events(job_id, "log") if "anchors" in e]
    chosen = event["anchors"]
    assert chosen["auto"] == ["aspect_ratios", "anchor_scale"]
    assert min(chosen["aspect_ratios"]) > 1.5  # synthetic plates are wide
    assert chosen["mean_iou"] > chosen["default_mean_iou"]
    assert "mean best IoU" in event["message"]
    assert (job.config["aspect_ratios"], job.config["anchor_scale"]) == (
        chosen["aspect_ratios"],
        chosen["anchor_scale"],
    )
    run = module_service / "runs" / job_id
    saved = Config.from_yaml(run / "config.yaml")
    assert (saved.model.aspect_ratios, saved.model.anchor_scale) == (chosen["aspect_ratios"], chosen["anchor_scale"])
    assert "anchors chosen on" in (run / "logs" / "worker.log").read_text()
    with session_scope() as session:
        model = session.get(ModelVersion, job.model_id)
        assert model is not None
        exported = load_exported(saved_model_dir(Path(model.path)))
    served = Config.from_yaml(exported.path / "assets" / "config.yaml")
    assert (served.input.tiles, served.model.aspect_ratios) == (192, chosen["aspect_ratios"])
    [detections] = predict_images(exported, [scene(640, 480, seed=4)], score_threshold=0.0)
    assert all(0 <= d.box[0] <= d.box[2] <= 640 and 0 <= d.box[1] <= d.box[3] <= 480 for d in detections)


FORMATS = ["saved_model", "tflite", "tflite_float16", "tflite_int8"]


@pytest.fixture(scope="module")
def formats_job(dataset_id: str, rows: Any) -> str:
    """A 2-step job exporting every format (the evaluation tests run its model too)."""
    job_id = rows.add_job(dataset_id, {}, {**FAST, "num_steps": 2, "export_formats": FORMATS})
    run_job(job_id)
    return str(job_id)


@pytest.mark.slow
def test_a_job_exports_each_format_asked_for_scores_it_on_val_and_serves_it_through_litert(
    formats_job: str, rows: Any
) -> None:
    from effdet.formats import read_manifest
    from effdet.tflite_runtime import load_tflite_export, predict_tflite
    from tests.effdet.test_export import scene

    formats, job_id = FORMATS, formats_job
    job = rows.job(job_id)
    assert job.status == JobStatus.succeeded, job.error
    with session_scope() as session:
        model = session.get(ModelVersion, job.model_id)
        assert model is not None
        folder = Path(model.path)
    manifest = read_manifest(folder)
    assert manifest is not None
    assert list(manifest.formats) == formats
    assert manifest.default_runtime in formats
    for name, score in manifest.formats.items():
        assert manifest.path(folder, name).exists(), name
        assert score.ap is not None, f"{name} is scored on the 3 val images"
        assert score.ms_per_image is not None
        assert score.ms_per_image > 0
    assert manifest.formats["tflite_float16"].size_bytes < manifest.formats["tflite"].size_bytes / 1.5, "fp16 weights"
    [message] = [e["message"] for e in _events(job_id, "log") if e.get("message", "").startswith("exported")]
    assert "saved_model AP" in message
    assert "tflite_float16 AP" in message
    assert "tflite_int8 AP" in message
    int8 = manifest.formats["tflite_int8"]
    assert int8.size_bytes < manifest.formats["tflite"].size_bytes / 2.5, "int8 weights"
    quantized = load_tflite_export(manifest.path(folder, "tflite_int8"), manifest.path(folder, "saved_model"), 1, 0.0)
    assert quantized.decoder is not None
    assert np.dtype(quantized.decoder.input_dtype) == np.uint8
    [low] = predict_tflite(quantized, [scene(320, 200, seed=1)], score_threshold=manifest.min_score / 2)
    assert all(d.score > manifest.min_score / 2 and d.box[2] <= 320 and d.box[3] <= 200 for d in low)
    assert manifest.threshold_floor == [], "every TFLite file holds the network alone and serves any threshold"
    half = load_tflite_export(manifest.path(folder, "tflite_float16"), manifest.path(folder, "saved_model"), 1, 0.3)
    assert half.decoder is not None
    assert np.dtype(half.decoder.input_dtype) == np.float32
    [found] = predict_tflite(half, [scene(320, 200, seed=1)], score_threshold=0.0)
    assert all(0 <= d.box[0] <= d.box[2] <= 320 and d.box[3] <= 200 for d in found)


def _evaluation(job_id: str, dataset_id: str, split: str, format: str, threshold: float) -> str:
    """A queued evaluation of the job's model, as the API stores it."""
    with session_scope() as session:
        row = Evaluation(
            model_id=_model_of(job_id),
            dataset_id=dataset_id,
            split=split,
            format=format,
            score_threshold=threshold,
        )
        evaluations.queue_evaluation(session=session, evaluation=row)
        return row.id


def _model_of(job_id: str) -> str:
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert job.model_id is not None, "the job made a model"
        return job.model_id


def _evaluation_row(evaluation_id: str) -> Evaluation:
    with session_scope() as session:
        row = session.get(Evaluation, evaluation_id)
        assert row is not None
        return row


@pytest.mark.slow
def test_an_evaluation_runs_a_format_over_a_split_and_counts_every_box(formats_job: str, dataset_id: str) -> None:
    from effdet.metrics import EvaluationReport

    evaluation_id = _evaluation(formats_job, dataset_id, "all", "tflite_int8", 0.3)
    run_evaluation(evaluation_id)
    row = _evaluation_row(evaluation_id)
    assert row.status == EvaluationStatus.succeeded, row.error
    assert row.progress == {"done": 12, "total": 12}
    report = EvaluationReport.model_validate(row.result)
    assert report.metrics.num_images == 12, "train and val"
    assert report.metrics.ap is not None
    assert list(report.metrics.per_class) == ["plate"]
    assert report.confusion.labels == ["plate", "background"]
    [[found, missed], [false_alarms, _]] = report.confusion.matrix
    plate = report.confusion.per_class["plate"]
    assert (plate.true_positives, plate.misses, plate.false_positives) == (found, missed, false_alarms)
    assert found + missed == _boxes(dataset_id), "every box is found or missed"
    assert report.ms_per_image > 0
    assert report.detection_threshold == 0.0, "the int8 file serves any threshold"
    run_evaluation(evaluation_id)
    assert _evaluation_row(evaluation_id).result == row.result, "a redelivery of an ended evaluation does nothing"


def _boxes(dataset_id: str) -> int:
    with session_scope() as session:
        dataset = session.get(Dataset, dataset_id)
        assert dataset is not None
        assert dataset.num_boxes is not None
        return dataset.num_boxes


@pytest.mark.slow
def test_an_evaluation_cancelled_queued_never_runs_and_running_stops_at_its_next_image(
    formats_job: str, dataset_id: str
) -> None:
    from worker.evaluate import EvaluationCancelledError, ProgressReporter

    queued = _evaluation(formats_job, dataset_id, "val", "saved_model", 0.3)
    with session_scope() as session:
        row = session.get(Evaluation, queued)
        assert row is not None
        evaluations.cancel_evaluation(session=session, evaluation=row)
    run_evaluation(queued)
    assert _evaluation_row(queued).status == EvaluationStatus.cancelled
    running = _evaluation(formats_job, dataset_id, "val", "saved_model", 0.3)
    assert evaluations.claim(running, "host:1", 60) is not None
    report = ProgressReporter(running, "host:1", total=3, interval_s=0)
    report(1)
    with session_scope() as session:
        session.execute(update(Evaluation).where(Evaluation.id == running).values(cancel_requested=True))
    with pytest.raises(EvaluationCancelledError):
        report(2)
    assert evaluations.claim(running, "host:2", 60) is None, "a live holder keeps it"


@pytest.mark.slow
def test_an_evaluation_writes_findings_and_images_and_accepted_fixes_make_a_new_version(
    formats_job: str, dataset_id: str, rows: Any
) -> None:
    import json

    from core.layout import (
        FIXES_FILE,
        IMAGES_FILE,
        LABEL_ERRORS_FILE,
        dataset_dir,
        evaluation_dir,
        records_dir,
        run_dir,
    )
    from core.settings import get_settings
    from effdet.data.shards import record_files
    from effdet.evaluate import records_ground_truth
    from effdet.layout import VAL_DETECTIONS_FILE

    evaluation_id = _evaluation(formats_job, dataset_id, "train", "saved_model", 0.3)
    run_evaluation(evaluation_id)
    assert _evaluation_row(evaluation_id).status == EvaluationStatus.succeeded
    folder = evaluation_dir(get_settings(), evaluation_id)
    issues = json.loads((folder / LABEL_ERRORS_FILE).read_text())
    assert [i["confidence"] for i in issues] == sorted((i["confidence"] for i in issues), reverse=True)
    images = json.loads((folder / IMAGES_FILE).read_text())
    assert len(images) == 9, "the train split"
    assert [i["errors"] for i in images] == sorted((i["errors"] for i in images), reverse=True)
    assert all(image["gallery_id"] for image in images), "each image can be drawn from the gallery"

    stored = json.loads((run_dir(get_settings(), formats_job) / VAL_DETECTIONS_FILE).read_text())
    assert len(stored["ground_truth"]["images"]) == 3, "the job kept its val predictions for the model page"
    assert all(d["image_id"] in {i["id"] for i in stored["ground_truth"]["images"]} for d in stored["detections"])

    parent = records_dir(get_settings(), dataset_id)
    truth = records_ground_truth(record_files(str(parent / "*.tfrecord")), {1: "plate"})
    first = truth["annotations"][0]
    second = next(a for a in truth["annotations"] if a["image_id"] != first["image_id"])
    fixes = [
        {"action": "delete_box", "image_id": first["image_id"], "annotation_id": first["id"]},
        {"action": "add_box", "image_id": first["image_id"], "label": "plate", "box": [5, 6, 40, 20]},
        {"action": "replace_box", "image_id": second["image_id"], "annotation_id": second["id"], "box": [1, 2, 30, 10]},
    ]
    with session_scope() as session:  # as POST /v1/datasets/{id}/versions stores it
        row = Dataset(name="plates (fixed)", format="tfrecord", requested_label_map={"1": "plate"})
        session.add(row)
        session.flush()
        version = row.id
    folder = dataset_dir(get_settings(), version)
    folder.mkdir(parents=True)
    (folder / FIXES_FILE).write_text(json.dumps({"parent_id": dataset_id, "fixes": fixes}))
    convert_dataset(version)
    fixed = rows.dataset(version)
    assert fixed.status == DatasetStatus.ready, fixed.error
    before = rows.dataset(dataset_id)
    assert (fixed.num_images, fixed.num_boxes) == (before.num_images, before.num_boxes)
    assert fixed.report["splits"]["val"]["images"] == before.report["splits"]["val"]["images"], "the split is kept"
    boxes = records_ground_truth(record_files(str(records_dir(get_settings(), version) / "*.tfrecord")), {1: "plate"})
    corners = sorted(tuple(round(v) for v in a["bbox"]) for a in boxes["annotations"])
    assert (5, 6, 40, 20) in corners
    assert (1, 2, 30, 10) in corners
    assert tuple(round(v) for v in first["bbox"]) not in corners
