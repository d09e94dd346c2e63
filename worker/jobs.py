"""A training job as the worker runs it: lease -> train -> evaluate -> export -> a new model version.

Idempotent and resumable: the run lives in DATA_DIR/runs/<job_id>, and `effdet.train.train` resumes from
its checkpoints, so a redelivered or re-sent task continues where the dead worker stopped; evaluation is
cheap to redo, and an export that was published already is kept (it is written atomically). The lease
(worker.lease) guarantees one runner at a time; every state change is a `JobEvent(kind="state")`.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select, update

from app.db import session_scope
from app.errors import disk_full_message, is_disk_full
from app.models import FINISHED, Job, JobEvent, JobStatus, ModelVersion, utcnow
from app.settings import get_settings
from worker.convert import RECORDS_DIR, dataset_dir
from worker.lease import Heartbeat, LeaseLostError, acquire, held, renew, worker_id
from worker.progress import JobRecorder, add_event, set_state

log = logging.getLogger(__name__)

LOG_FILE = "logs/worker.log"
METRICS_FILE = "metrics.json"
GROUND_TRUTH_FILE = "val_annotations.json"
DEFAULT_MIN_SCORE_THRESH = 0.3
LOGGED = ("effdet", "worker")
"""Loggers whose records go to the run's worker.log while the job runs."""


class JobCancelledError(Exception):
    """The user asked to cancel; the job ends `cancelled`."""


class ExportOptions(BaseModel):
    """The export settings a job may carry in its options, beside effdet's TrainOptions."""

    min_score_thresh: float = DEFAULT_MIN_SCORE_THRESH
    tflite: bool = False


class JobSpec(BaseModel):
    """What the worker needs of a job row, read once at the start."""

    id: str
    owner: str | None
    dataset_id: str
    model_name: str
    config: dict[str, Any]
    options: dict[str, Any]
    model_id: str | None


def run_dir(job_id: str) -> Path:
    """DATA_DIR/runs/<job_id>: checkpoints, logs and metrics of one job (never shared between jobs)."""
    return get_settings().folder("runs") / job_id


def model_dir(model_id: str) -> Path:
    """DATA_DIR/models/<model_id>: saved_model/ (and model.tflite) of one model version."""
    return get_settings().folder("models") / model_id


@contextmanager
def job_log(run: Path) -> Iterator[Path]:
    """Copy effdet's and the worker's log records (INFO and up) to the run's worker.log while the job runs."""
    path = run / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    loggers = [logging.getLogger(name) for name in LOGGED]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield path
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
        try:
            handler.close()
        except OSError as err:  # a full disk loses the last lines of the log, never the job's outcome
            log.warning("could not finish writing %s: %s", path, err)


def _cancel_queued(job_id: str) -> None:
    """End a job that was cancelled before any worker started it (it never trains)."""
    with session_scope() as session:
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.queued.value)
            .values(status=JobStatus.cancelled.value, finished_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            session.add(JobEvent(job_id=job_id, kind="state", data={"status": JobStatus.cancelled.value}))


def run_job(job_id: str) -> None:
    """Run (or resume) one job to a final state, unless it is finished or a live worker holds it."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or job.status in FINISHED:
            log.info("job %s: nothing to do (%s)", job_id, job.status if job else "deleted")
            return
        if job.cancel_requested and job.status == JobStatus.queued:
            _cancel_queued(job_id)
            return
    settings = get_settings()
    holder = worker_id()
    attempt = acquire(job_id, holder, settings.job_lease_s)
    if attempt is None:
        log.info("job %s: held by a live worker or finished; this delivery is dropped", job_id)
        return
    run = run_dir(job_id)
    with job_log(run), Heartbeat(f"job-{job_id[:8]}", lambda: renew(job_id, holder), settings.job_lease_s / 4) as beat:
        log.info("job %s: attempt %d on %s", job_id, attempt, holder)
        add_event(job_id, "state", {"status": JobStatus.training.value, "worker": holder, "attempt": attempt})
        recorder = JobRecorder(job_id, holder, settings.progress_interval_s, beat.lost)
        _run_to_end(job_id, holder, run, recorder)


def _run_to_end(job_id: str, holder: str, run: Path, recorder: JobRecorder) -> None:
    """Execute the job and turn how it ended into its final state (errors become one actionable line)."""
    from effdet.checkpoints import CheckpointError
    from effdet.train import TrainingDivergedError

    try:
        try:
            _execute(job_id, holder, run, recorder)
        except JobCancelledError:
            set_state(job_id, holder, JobStatus.cancelled.value, finished_at=utcnow())
        except (TrainingDivergedError, CheckpointError, ValueError, FileNotFoundError) as exc:
            log.warning("job %s failed: %s", job_id, exc)
            set_state(job_id, holder, JobStatus.failed.value, error=str(exc), finished_at=utcnow())
        except LeaseLostError:
            raise
        except Exception as exc:
            log.exception("job %s: internal error", job_id)
            set_state(job_id, holder, JobStatus.failed.value, error=internal_error(exc), finished_at=utcnow())
    except LeaseLostError:
        log.warning("job %s: another worker took the job over; this attempt stops without writing", job_id)


def internal_error(exc: BaseException) -> str:
    """The one line a user sees for an unexpected exception (its traceback is in the run's worker.log); a full
    disk comes first, since TensorFlow reports it as ResourceExhaustedError like an out-of-memory."""
    if is_disk_full(exc):
        return disk_full_message("running the job", "submit the job again")
    if type(exc).__name__ == "ResourceExhaustedError":
        return (
            "out of memory: lower batch_size, set mixed_precision=true on a GPU, or freeze the backbone "
            "(var_freeze_expr='(efficientnet)'); see the job logs"
        )
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"internal error: {type(exc).__name__}: {first}; see the job logs"


def _spec(job_id: str) -> JobSpec:
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise LeaseLostError(f"job {job_id} was deleted")
        return JobSpec.model_validate(job, from_attributes=True)


def _stop_if_asked(recorder: JobRecorder) -> None:
    """Between phases: honour a cancel request and a lost lease."""
    recorder.check()
    if recorder.cancelled:
        raise JobCancelledError


def _execute(job_id: str, holder: str, run: Path, recorder: JobRecorder) -> None:
    """Train (resuming), evaluate, export and register the model; raises JobCancelledError or an error."""
    from effdet.checkpoints import load_run_model
    from effdet.train import train

    spec = _spec(job_id)
    records = dataset_dir(spec.dataset_id) / RECORDS_DIR
    train_files = str(records / "train-*.tfrecord")
    val_files, truth = _val_split(records)
    config = job_config(spec)
    result = train(
        config,
        train_files,
        val_files,
        run,
        train_options(spec.options),
        ground_truth=truth,
        on_progress=recorder.progress,
        should_stop=recorder.should_stop,
    )
    if result.start_step > 0:
        add_event(job_id, "log", {"message": f"resumed from the checkpoint at step {result.start_step}"})
    _stop_if_asked(recorder)
    if result.status == "cancelled":
        raise JobCancelledError

    set_state(job_id, holder, JobStatus.evaluating.value)
    model_config, model = load_run_model(run)
    metrics = _evaluate(job_id, model, model_config, val_files, truth, run)
    _stop_if_asked(recorder)

    set_state(job_id, holder, JobStatus.exporting.value, metrics=metrics)
    model_id = spec.model_id or _reserve_model_id(job_id, holder)
    _export(model, model_config, model_dir(model_id), ExportOptions.model_validate(spec.options))
    _register(spec, holder, model_id, metrics, _label_names(model_config))


def job_config(spec: JobSpec) -> Any:
    """The effdet Config from the job's stored automl-flat hyperparameters."""
    from effdet.config import get_config

    return get_config(str(spec.config.get("name", spec.model_name)), spec.config)


def train_options(options: dict[str, Any]) -> Any:
    """effdet TrainOptions from the job's stored options; `pretrained` names a file in DATA_DIR/checkpoints."""
    from effdet.train import TrainOptions

    settings = get_settings()
    values = {key: value for key, value in options.items() if key in TrainOptions.model_fields}
    pretrained = values.pop("pretrained", None)
    if pretrained:
        name = str(pretrained)
        if Path(name).name != name:
            raise ValueError(f"pretrained {name!r} must be a checkpoint name from GET /v1/checkpoints, not a path")
        values["pretrained"] = settings.folder("checkpoints") / name
    values["progress_interval_s"] = settings.progress_interval_s
    return TrainOptions.model_validate(values)


def _val_split(records: Path) -> tuple[str | None, Path | None]:
    """The val records and their ground truth, or (None, None) when the dataset has no val images."""
    truth = records / GROUND_TRUTH_FILE
    if not any(records.glob("val-*.tfrecord")) or not truth.is_file():
        return None, None
    if not json.loads(truth.read_text()).get("images"):
        return None, None
    return str(records / "val-*.tfrecord"), truth


def _evaluate(
    job_id: str, model: Any, config: Any, val_files: str | None, truth: Path | None, run: Path
) -> dict[str, Any] | None:
    """COCO metrics on the val split, written to run/metrics.json and the event log (None without val)."""
    from effdet.evaluate import evaluate_model, write_metrics

    if val_files is None or truth is None:
        message = "the dataset has no val images: no metrics (upload it again with val_fraction > 0)"
        add_event(job_id, "log", {"message": message})
        return None
    metrics = evaluate_model(model, config, val_files, truth)
    write_metrics(metrics, run / METRICS_FILE)
    data = metrics.model_dump(mode="json")
    add_event(job_id, "metrics", data)
    return data


def _reserve_model_id(job_id: str, holder: str) -> str:
    """Choose the model id before exporting and store it, so a resumed attempt reuses the same folder."""
    model_id = uuid.uuid4().hex
    with session_scope() as session:
        result = session.execute(
            update(Job)
            .where(held(job_id, holder))
            .values(model_id=model_id)
            .execution_options(synchronize_session=False)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            raise LeaseLostError(f"job {job_id} is no longer held by {holder}")
    return model_id


def _export(model: Any, config: Any, folder: Path, options: ExportOptions) -> None:
    """Write saved_model/ (and model.tflite) unless a previous attempt already published them."""
    from effdet.export import export_saved_model, export_tflite

    saved = folder / "saved_model"
    if not (saved / "saved_model.pb").is_file():
        if saved.exists():  # an empty leftover folder; export_saved_model publishes atomically
            saved.rmdir()
        export_saved_model(model, config, saved, min_score_thresh=options.min_score_thresh)
    if options.tflite and not (folder / "model.tflite").is_file():
        export_tflite(model, config, folder / "model.tflite", min_score_thresh=options.min_score_thresh)


def _label_names(config: Any) -> dict[str, str]:
    from effdet.export import label_names

    return {str(k): v for k, v in label_names(config).items()}


def _register(
    spec: JobSpec, holder: str, model_id: str, metrics: dict[str, Any] | None, labels: dict[str, str]
) -> None:
    """Create the model version (previous max for owner + variant, plus one) and end the job succeeded,
    in one transaction, so a model exists exactly when its job succeeded."""
    now = utcnow()
    with session_scope() as session:
        result = session.execute(
            update(Job)
            .where(held(spec.id, holder))
            .values(status=JobStatus.succeeded.value, model_id=model_id, finished_at=now, heartbeat_at=now)
            .execution_options(synchronize_session=False)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            raise LeaseLostError(f"job {spec.id} is no longer held by {holder}")
        previous = session.scalar(
            select(func.max(ModelVersion.version)).where(
                ModelVersion.owner.is_(None) if spec.owner is None else ModelVersion.owner == spec.owner,
                ModelVersion.name == spec.model_name,
            )
        )
        session.add(
            ModelVersion(
                id=model_id,
                owner=spec.owner,
                job_id=spec.id,
                name=spec.model_name,
                version=(previous or 0) + 1,
                path=str(model_dir(model_id)),
                metrics=metrics,
                label_map=labels,
            )
        )
        event = {"status": JobStatus.succeeded.value, "worker": holder, "model_id": model_id}
        session.add(JobEvent(job_id=spec.id, kind="state", data=event))
