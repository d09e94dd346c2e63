"""A training job as the worker runs it: lease -> train -> evaluate -> export -> a new model version.

Idempotent and resumable: the run lives in DATA_DIR/runs/<job_id>, and `effdet.workflow.fine_tune` resumes
from its checkpoints, so a redelivered or re-sent task continues where the dead worker stopped; evaluation is
cheap to redo, and an export that was published already is kept (it is written atomically). The lease
(`core.states.claim`) guarantees one runner at a time; every state change goes through `core.states`.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from core import layout, run_snapshots, states
from core.db import session_scope
from core.disk import disk_full_message, is_disk_full
from core.settings import get_settings
from core.states import LeaseLostError, add_event, worker_id
from core.store import model_prefix, records_prefix, share, shared, sync_checkpoints
from core.tables import FINISHED, Job, JobStatus
from effdet.config import Config, get_config
from effdet.formats import EXPORT_FORMATS, ExportFormat, default_formats
from effdet.layout import VAL_DETECTIONS_FILE
from effdet.workflow import DEFAULT_MIN_SCORE_THRESH, LoadedRun, Records, fine_tune, load_run, resolve_auto_anchors
from worker.lease import Heartbeat
from worker.progress import JobRecorder

log = logging.getLogger(__name__)

LOGGED = ("effdet", "worker")
"""Loggers whose records go to the run's worker.log while the job runs."""


class JobCancelledError(Exception):
    """The user asked to cancel; the job ends `cancelled`."""


class ExportOptions(BaseModel):
    """The export settings a job may carry in its options, beside effdet's TrainOptions."""

    min_score_thresh: float = DEFAULT_MIN_SCORE_THRESH
    export_formats: list[ExportFormat] | None = Field(
        None, description="default: saved_model and tflite, the SavedModel alone for a tiled model"
    )


@contextmanager
def job_log(run: Path) -> Iterator[Path]:
    """Copy effdet's and the worker's log records (INFO and up) to the run's worker.log while the job runs."""
    path = run / layout.WORKER_LOG
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


def run_job(job_id: str) -> None:
    """Run (or resume) one job to a final state, unless it is finished or a live worker holds it."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or job.status in FINISHED:
            log.info("job %s: nothing to do (%s)", job_id, job.status if job else "deleted")
            return
        if job.cancel_requested and job.status == JobStatus.queued:
            states.cancel_queued(job_id)
            return
    settings = get_settings()
    holder = worker_id()
    attempt = states.claim(job_id, holder, settings.job_lease_s)
    if attempt is None:
        log.info("job %s: held by a live worker or finished; this delivery is dropped", job_id)
        return
    run = layout.run_dir(settings, job_id)
    renew = lambda: states.renew(job_id, holder)  # noqa: E731
    with job_log(run), Heartbeat(f"job-{job_id[:8]}", renew, settings.job_lease_s / 4) as beat:
        log.info("job %s: attempt %d on %s", job_id, attempt, holder)
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
            states.cancelled(job_id, holder)
        except (TrainingDivergedError, CheckpointError, ValueError, FileNotFoundError) as exc:
            log.warning("job %s failed: %s", job_id, exc)
            states.fail(job_id, holder, str(exc))
        except LeaseLostError:
            raise
        except Exception as exc:
            log.exception("job %s: internal error", job_id)
            states.fail(job_id, holder, internal_error(exc))
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


def _job_row(job_id: str) -> Job:
    """The job's row, read once at the start (detached: the worker changes it only through core.states)."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise LeaseLostError(f"job {job_id} was deleted")
        return job


def _stop_if_asked(recorder: JobRecorder) -> None:
    """Between phases: honour a cancel request and a lost lease."""
    recorder.check()
    if recorder.cancelled:
        raise JobCancelledError


def _execute(job_id: str, holder: str, run: Path, recorder: JobRecorder) -> None:
    """Train (resuming), evaluate, export and register the model; raises JobCancelledError or an error."""
    settings = get_settings()
    job = _job_row(job_id)
    records = Records(shared(settings, records_prefix(job.dataset_id), layout.records_dir(settings, job.dataset_id)))
    if (pulled := run_snapshots.pull(settings, job_id, run)) is not None:
        log.info("job %s: took the run over from the store's snapshot at step %d", job_id, pulled)
    config, choice = resolve_auto_anchors(job_config(job), records)
    if choice is not None:
        states.anchors_chosen(job_id, holder, config.to_flat(), choice.model_dump(mode="json"), choice.describe())
    result = fine_tune(
        config,
        records,
        run,
        train_options(job.options),
        on_progress=recorder.progress,
        should_stop=recorder.should_stop,
        should_finish=recorder.should_finish,
        on_checkpoint=lambda step: _snapshot(job_id, run, step),
    )
    if result.start_step > 0:
        add_event(job_id, "log", {"message": f"resumed from the checkpoint at step {result.start_step}"})
    _stop_if_asked(recorder)
    if result.status == "cancelled":
        raise JobCancelledError
    if result.status == "stopped":
        message = f"training finished on request at step {result.step} of {result.total_steps}; the model keeps it"
        add_event(job_id, "log", {"message": message})

    states.set_state(job_id, holder, JobStatus.evaluating)
    best_step = _best_step(run)
    if best_step is not None:
        add_event(job_id, "log", {"message": f"the model is the best by val AP, from step {best_step}"})
    loaded = load_run(run, "best" if best_step is not None else "final")
    metrics = _evaluate(job_id, loaded, records)
    if metrics is not None and best_step is not None:
        metrics["best_step"] = best_step
    if metrics is not None and result.status == "stopped":
        metrics["stopped_at_step"] = result.step
    _stop_if_asked(recorder)

    states.set_state(job_id, holder, JobStatus.exporting, metrics=metrics)
    model_id = job.model_id or states.reserve_model_id(job_id, holder)
    folder = layout.model_dir(settings, model_id)
    options = ExportOptions.model_validate(job.options)
    _export(loaded, folder, options)
    _export_formats(job_id, loaded, folder, options, records)
    if (run / VAL_DETECTIONS_FILE).is_file():  # the model's val images travel with it
        shutil.copyfile(run / VAL_DETECTIONS_FILE, folder / VAL_DETECTIONS_FILE)
    share(settings, model_prefix(model_id), folder)  # whole in the store before the model exists
    _snapshot(job_id, run, result.step)  # logs and metrics as they ended
    states.succeed(job, holder, model_id, str(folder), metrics, _label_names(loaded.config))


def _snapshot(job_id: str, run: Path, step: int) -> None:
    """Send the run to the store (a bucket); a store that fails only costs the resumability elsewhere, so training
    goes on with the checkpoint kept on this machine."""
    try:
        run_snapshots.push(get_settings(), job_id, run, step)
    except Exception as exc:
        log.warning("job %s: the checkpoint of step %d stays on this machine only: %s", job_id, step, exc)


def _best_step(run: Path) -> int | None:
    """The step of the weights kept as the best by val AP (a job with eval_every), or None when there are none."""
    from effdet.layout import BEST_DIR, METRICS_FILE

    kept = run / BEST_DIR / METRICS_FILE
    return int(json.loads(kept.read_text())["step"]) if kept.is_file() else None


def job_config(job: Job) -> Config:
    """The effdet Config from the job's stored automl-flat hyperparameters (the run's config.yaml is written
    from it once, and every later step reads that file)."""
    return get_config(str(job.config.get("name", job.model_name)), job.config)


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
        sync_checkpoints(settings)  # with a bucket store, those this machine lacks
        values["pretrained"] = layout.checkpoints_dir(settings) / name
    values["progress_interval_s"] = settings.progress_interval_s
    return TrainOptions.model_validate(values)


def _evaluate(job_id: str, loaded: LoadedRun, records: Records) -> dict[str, Any] | None:
    """COCO metrics on the val split, written to the run's metrics.json and the event log (None without val)."""
    metrics = loaded.evaluate(records)
    if metrics is None:
        message = "the dataset has no val images: no metrics (upload it again with val_fraction > 0)"
        add_event(job_id, "log", {"message": message})
        return None
    data = metrics.model_dump(mode="json")
    add_event(job_id, "metrics", data)
    return data


def _export(loaded: LoadedRun, folder: Path, options: ExportOptions) -> None:
    """Write saved_model/ unless a previous attempt already published it."""
    saved = layout.saved_model_dir(folder)
    if not (saved / "saved_model.pb").is_file():
        if saved.exists():  # an empty leftover folder; the export publishes atomically
            saved.rmdir()
        loaded.export(saved, options.min_score_thresh)


def _export_formats(job_id: str, loaded: LoadedRun, folder: Path, options: ExportOptions, records: Records) -> None:
    """Export the TFLite formats asked for, score every format on the val split and write the model's manifest
    (effdet.formats: what GET /v1/models/{id} shows per format, and the runtime predict uses by default)."""
    from effdet.format_export import export_tflite_formats, score_formats
    from effdet.formats import FormatsManifest, choose_default, write_manifest

    asked = options.export_formats or default_formats(loaded.config)
    formats = [format for format in EXPORT_FORMATS if format in asked]
    export_tflite_formats(loaded.model, loaded.config, folder, formats, records.train_files)
    detects = "object_detection" in loaded.config.model.heads  # a segmenter's mIoU is the job's metrics
    scores = score_formats(
        folder,
        formats,
        options.min_score_thresh,
        records.val_files if detects else None,
        records.ground_truth,
        get_settings().tflite_threads,
    )
    mean = loaded.config.model.mean_rgb
    manifest = FormatsManifest(
        min_score=options.min_score_thresh,
        mean_rgb=list(mean) if isinstance(mean, list) else [float(mean)] * 3,
        formats=scores,
        default_runtime=choose_default(scores),
        threshold_floor=[],
    )
    write_manifest(folder, manifest)
    scored = "; ".join(
        f"{name} AP {score.ap:.3f} at {score.ms_per_image} ms" for name, score in scores.items() if score.ap is not None
    )
    message = (
        f"exported {', '.join(formats)}{f' ({scored})' if scored else ''}; predict serves {manifest.default_runtime}"
    )
    add_event(job_id, "log", {"message": message})


def _label_names(config: Config) -> dict[str, str]:
    from effdet.export import label_names

    return {str(k): v for k, v in label_names(config).items()}
