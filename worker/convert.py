"""Dataset conversion as the worker runs it: DATA_DIR/datasets/<id>/upload.zip -> tfrecords/ and a ready row.

Idempotent: a redelivered or re-sent task for a dataset that is no longer validating does nothing, and one
whose tfrecords/ already exist only records them. Each attempt unpacks and converts inside its own scratch
folder (`.convert-<host>:<pid>-<token>/`), removed afterwards, and publishes tfrecords/ with one rename, so two
attempts running at once (a duplicate delivery) cannot mix their files: the first rename wins. A killed
attempt cannot remove its scratch folder; the next attempt does when its process is gone, and every scratch
folder goes once the dataset is ready.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import layout, states
from core.db import session_scope
from core.disk import disk_full_message, is_disk_full
from core.settings import get_settings
from core.states import holder_is_dead, worker_id
from core.store import (
    NotInStoreError,
    dataset_input_prefix,
    dataset_records,
    records_prefix,
    share,
    share_files,
    shared,
)
from core.tables import Dataset, DatasetStatus
from effdet.data.layout import REPORT_FILE
from worker.lease import Heartbeat
from worker.progress import DatasetProgress
from worker.versions import build_fixed_upload

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Labelling:
    """What a conversion reads from the row: the format, the split and the classes the user asked for (the
    aliases merged and the label map fixed at upload or by the last re-label)."""

    format: str
    val_fraction: float
    class_aliases: dict[str, str] | None
    label_map: dict[int, str] | None

    @classmethod
    def of(cls, dataset: Dataset) -> _Labelling:
        requested = dataset.requested_label_map
        return cls(
            format=dataset.format,
            val_fraction=dataset.val_fraction,
            class_aliases=dict(dataset.class_aliases) if dataset.class_aliases else None,
            label_map={int(k): str(v) for k, v in requested.items()} if requested else None,
        )


def _record_ready(dataset_id: str, records: Path) -> None:
    """Mark the dataset ready with the counts, label map and report of its converted records; no scratch
    folder is needed any more (an attempt still running lost the race to publish already)."""
    from effdet.data.convert import ConversionReport

    report = ConversionReport.model_validate_json((records / REPORT_FILE).read_text())
    states.dataset_ready(
        dataset_id,
        num_images=sum(split.images for split in report.splits.values()),
        num_boxes=sum(split.boxes for split in report.splits.values()),
        label_map={str(k): v for k, v in report.label_map.items()},
        report=report.model_dump(mode="json"),
    )
    _remove_scratch(records.parent, dead_only=False)


def _remove_scratch(folder: Path, dead_only: bool) -> None:
    """Delete conversion scratch folders: those whose attempt's process died (dead_only), or all of them."""
    for scratch in folder.glob(f"{layout.SCRATCH_PREFIX}*"):
        holder = scratch.name.removeprefix(layout.SCRATCH_PREFIX).rpartition("-")[0]
        if not dead_only or holder_is_dead(holder):
            log.info("removing the conversion scratch folder %s", scratch)
            shutil.rmtree(scratch, ignore_errors=True)


def _input_files(folder: Path) -> list[Path]:
    return [folder / name for name in (layout.UPLOAD_FILE, layout.FIXES_FILE) if (folder / name).is_file()]


def _pull_input(dataset_id: str, folder: Path) -> None:
    """With a bucket store, bring the dataset's input (upload.zip, or a version's fixes.json) to this machine, and
    drop records this machine converted before (a re-label on another machine made them stale)."""
    settings = get_settings()
    if settings.storage_url is None:
        return
    try:
        fetched = shared(settings, dataset_input_prefix(dataset_id), folder)
    except NotInStoreError:
        raise FileNotFoundError(f"the upload of dataset {dataset_id} is not in the store; upload it again") from None
    folder.mkdir(parents=True, exist_ok=True)
    for path in _input_files(fetched):
        if not (folder / path.name).is_file():
            shutil.copyfile(path, folder / path.name)
    shutil.rmtree(folder / layout.RECORDS_DIR, ignore_errors=True)


def _share_records(dataset_id: str, folder: Path) -> None:
    """With a bucket store, publish the converted records there; this machine's copy goes (a fetch brings them
    back into the cache when a job here needs them)."""
    settings = get_settings()
    if settings.storage_url is None:
        return
    share(settings, records_prefix(dataset_id), folder / layout.RECORDS_DIR)
    shutil.rmtree(folder / layout.RECORDS_DIR, ignore_errors=True)


def _convert(dataset_id: str, folder: Path, labels: _Labelling, progress: DatasetProgress) -> None:
    """Unpack (with the service's limits) and convert in a scratch folder, then publish tfrecords/."""
    from effdet.data.convert import convert_dataset
    from effdet.data.ingest import extract_zip

    settings = get_settings()
    upload = folder / layout.UPLOAD_FILE
    if not upload.is_file():
        raise FileNotFoundError(f"the uploaded file of dataset {dataset_id} is missing; upload the dataset again")
    scratch = Path(tempfile.mkdtemp(prefix=f"{layout.SCRATCH_PREFIX}{worker_id()}-", dir=folder))
    try:
        root = extract_zip(
            upload, scratch / "raw", max_files=settings.max_files, max_total_bytes=settings.max_uncompressed_bytes
        )
        staged = scratch / layout.RECORDS_DIR
        convert_dataset(
            root,
            staged,
            format=labels.format,
            val_fraction=labels.val_fraction,
            label_map=labels.label_map,
            aliases=labels.class_aliases,
            progress=progress,
            max_pixels=settings.max_image_pixels,
        )
        try:
            staged.rename(folder / layout.RECORDS_DIR)
        except OSError:
            if not (folder / layout.RECORDS_DIR / REPORT_FILE).is_file():
                raise
            log.info("dataset %s: another attempt published its records first", dataset_id)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _log_failure(folder: Path, exc: BaseException) -> None:
    """Append the traceback to the dataset's worker log (the row gets one line, this file the details); best
    effort, since a full disk must still let the row say so."""
    path = folder / layout.WORKER_LOG
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            handle.write("".join(traceback.format_exception(exc)))
    except OSError as err:
        log.warning("dataset %s: could not write %s: %s", folder.name, path, err)


def _crash_message(exc: BaseException) -> str:
    """The one line a user sees for an unexpected conversion failure (a full disk says what to free)."""
    if is_disk_full(exc):
        return disk_full_message("converting the dataset", "upload it again")
    first = (str(exc).splitlines() or [""])[0][:300]
    return f"internal error: {type(exc).__name__}: {first}; see the dataset's worker log"


def run_conversion(dataset_id: str) -> None:
    """Validate and convert one uploaded dataset; the row ends ready or failed with an actionable error."""
    with session_scope() as session:
        dataset = session.get(Dataset, dataset_id)
        if dataset is None or dataset.status != DatasetStatus.validating:
            log.info("dataset %s: nothing to do (%s)", dataset_id, dataset.status if dataset else "deleted")
            return
        labels = _Labelling.of(dataset)
    settings = get_settings()
    folder = layout.dataset_dir(settings, dataset_id)
    _remove_scratch(folder, dead_only=True)
    if (published := dataset_records(settings, dataset_id) / REPORT_FILE).is_file():
        _record_ready(dataset_id, published.parent)
        return
    progress = DatasetProgress(dataset_id)
    progress(0, 0)
    lease_s = get_settings().job_lease_s
    try:
        with Heartbeat(f"dataset-{dataset_id[:8]}", progress.touch, max(0.5, lease_s / 3)):
            _pull_input(dataset_id, folder)
            if (folder / layout.FIXES_FILE).is_file() and not (folder / layout.UPLOAD_FILE).is_file():
                build_fixed_upload(folder)
                share_files(settings, dataset_input_prefix(dataset_id), _input_files(folder))  # for thumbnails
            _convert(dataset_id, folder, labels, progress)
            _share_records(dataset_id, folder)
        _record_ready(dataset_id, dataset_records(settings, dataset_id))
    except (ValueError, FileNotFoundError) as exc:
        # DatasetFormatError, UnsafeArchiveError, NoUsableImagesError: effdet writes these for users
        states.dataset_failed(dataset_id, str(exc), _failure_report(exc))
    except Exception as exc:
        log.exception("dataset %s: conversion crashed", dataset_id)
        _log_failure(folder, exc)
        shutil.rmtree(folder / layout.RECORDS_DIR, ignore_errors=True)  # records whose row could not be marked ready
        states.dataset_failed(dataset_id, _crash_message(exc))


def _failure_report(exc: Exception) -> dict[str, Any] | None:
    """The report of a dataset that failed for its content: the problems of every file, so they can be fixed."""
    from effdet.data.convert import NoUsableImagesError

    if isinstance(exc, NoUsableImagesError):
        return {"problems": [problem.model_dump(mode="json") for problem in exc.problems]}
    return None
