"""An evaluation as the worker runs it: lease -> the model's format over the dataset's split -> COCO metrics and
the counts at the asked threshold (and, for a model with a segmentation head, the mIoU of its SavedModel's class
maps against the records' masks) -> the evaluation's result.

The model runs through the same serving path predict uses (effdet.format_export.format_predictor), fed each
record's original image bytes, so the numbers are those of the deployed format. Its classes are matched to the
dataset's by name (the API refused a dataset with a class the model lacks); detections of model classes the
dataset does not have are left out. Idempotent: a redelivery of a finished evaluation does nothing, one held by
a live worker is dropped, and one whose worker died is run again from the start (it is cheap next to training).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from core import evaluations, layout
from core.db import session_scope
from core.layout import IMAGES_FILE, LABEL_ERRORS_FILE
from core.settings import get_settings
from core.states import LeaseLostError, worker_id
from core.store import dataset_records, evaluation_prefix, model_folder, share
from core.tables import Dataset, Evaluation, ModelVersion
from worker.jobs import internal_error
from worker.lease import Heartbeat

log = logging.getLogger(__name__)


class EvaluationCancelledError(Exception):
    """The user asked to cancel; the evaluation ends `cancelled`."""


class ProgressReporter:
    """Called after each image: stores progress every `interval_s` (and at the end), and stops the run when the
    user cancelled or the lease was lost."""

    def __init__(self, evaluation_id: str, holder: str, total: int, interval_s: float) -> None:
        self.evaluation_id, self.holder, self.total, self.interval_s = evaluation_id, holder, total, interval_s
        self._last = 0.0

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if done < self.total and now - self._last < self.interval_s:
            return
        self._last = now
        control = evaluations.record_progress(self.evaluation_id, self.holder, done, self.total)
        if not control.held:
            raise LeaseLostError(f"evaluation {self.evaluation_id} is no longer held by {self.holder}")
        if control.cancel:
            raise EvaluationCancelledError


def run_evaluation(evaluation_id: str) -> None:
    """Run one evaluation to a final state, unless it ended or a live worker holds it."""
    settings = get_settings()
    holder = worker_id()
    row = evaluations.claim(evaluation_id, holder, settings.job_lease_s)
    if row is None:
        log.info("evaluation %s: ended, cancelled or held by a live worker; this delivery is dropped", evaluation_id)
        return
    renew = lambda: evaluations.renew(evaluation_id, holder)  # noqa: E731
    with Heartbeat(f"evaluation-{evaluation_id[:8]}", renew, settings.job_lease_s / 4):
        try:
            try:
                result = _evaluate(row, holder)
            except EvaluationCancelledError:
                evaluations.cancelled(evaluation_id, holder)
                return
            except (ValueError, FileNotFoundError) as exc:
                log.warning("evaluation %s failed: %s", evaluation_id, exc)
                evaluations.fail(evaluation_id, holder, str(exc))
                return
            except LeaseLostError:
                raise
            except Exception as exc:
                log.exception("evaluation %s: internal error", evaluation_id)
                evaluations.fail(evaluation_id, holder, internal_error(exc).replace("the job logs", "the worker log"))
                return
            evaluations.succeed(evaluation_id, holder, result)
        except LeaseLostError:
            log.warning("evaluation %s: another worker took it over; this attempt stops without writing", evaluation_id)


def _rows(row: Evaluation) -> tuple[ModelVersion, Dataset]:
    with session_scope() as session:
        model = session.get(ModelVersion, row.model_id)
        dataset = session.get(Dataset, row.dataset_id)
        if model is None or dataset is None:
            raise ValueError("the model or the dataset of this evaluation was deleted")
        return model, dataset


def split_files(records: Any, split: str) -> list[str]:
    """The record globs of a split of a converted dataset (effdet.workflow.Records)."""
    val = [records.val_files] if records.val_files is not None else []
    if split == "val" and not val:
        raise ValueError("the dataset has no val images: evaluate split 'train' or 'all', or upload it with val images")
    return val if split == "val" else [records.train_files, *(val if split == "all" else [])]


def class_mapping(model_labels: dict[str, str], dataset_labels: dict[str, str]) -> tuple[dict[int, int], list[str]]:
    """{model class id: dataset class id} of the classes both name alike, and the model's class names the dataset
    lacks."""
    dataset_ids = {name: int(key) for key, name in dataset_labels.items()}
    mapping = {int(key): dataset_ids[name] for key, name in model_labels.items() if name in dataset_ids}
    return mapping, sorted(name for name in model_labels.values() if name not in dataset_ids)


def _max_id(labels: dict[str, str]) -> int:
    """The largest class id of a label map ({"id": "name"}), 0 when empty."""
    return max((int(key) for key in labels), default=0)


def _evaluate(row: Evaluation, holder: str) -> dict[str, Any]:
    """The evaluation's result document (effdet.metrics.EvaluationReport)."""
    from effdet.confusion import confusion_matrix, worst_images
    from effdet.data.image_index import gallery_ids
    from effdet.data.layout import IMAGE_INDEX_FILE
    from effdet.data.shards import record_files
    from effdet.evaluate import coco_metrics, records_ground_truth, write_json
    from effdet.format_export import format_predictor, record_detections
    from effdet.formats import read_manifest, served_min_score
    from effdet.label_errors import CONFIDENT, find_label_errors
    from effdet.metrics import EvaluationReport
    from effdet.predict import read_segmentation_classes
    from effdet.seg_evaluate import evaluate_exported_segmentation
    from effdet.workflow import Records

    settings = get_settings()
    model, dataset = _rows(row)
    folder = model_folder(model)
    records = dataset_records(settings, dataset.id)
    files = split_files(Records(records), row.split)
    dataset_labels = {str(k): str(v) for k, v in (dataset.label_map or {}).items()}
    mapping, ignored = class_mapping({str(k): str(v) for k, v in (model.label_map or {}).items()}, dataset_labels)
    truth = records_ground_truth(record_files(files), {int(k): v for k, v in dataset_labels.items()})
    if not truth["images"]:
        raise ValueError(f"the dataset's {row.split} split has no images; evaluate another split")
    manifest = read_manifest(folder)
    min_score = served_min_score(manifest)
    floor = manifest.floor(row.format) if manifest else 0.0  # type: ignore[arg-type]
    predict = format_predictor(folder, row.format, min_score, settings.tflite_threads, floor)  # type: ignore[arg-type]
    segments = read_segmentation_classes(layout.saved_model_dir(folder)) is not None
    images = len(truth["images"])
    report = ProgressReporter(row.id, holder, images * (2 if segments else 1), settings.progress_interval_s)
    report(0)
    found = record_detections(predict, record_files(files), report)
    detections = [
        {**d, "category_id": mapping[d["category_id"]]} for d in found.detections if d["category_id"] in mapping
    ]
    segmentation = None
    if segments:  # a second pass over the SavedModel's class maps (segmentation models export no other format)
        names = [
            "background",
            *(dataset_labels.get(str(i), f"class_{i}") for i in range(1, _max_id(dataset_labels) + 1)),
        ]
        scored = lambda done: report(images + done)  # noqa: E731
        segmentation = evaluate_exported_segmentation(
            layout.saved_model_dir(folder), record_files(files), mapping, names, scored
        )
        report(2 * images)
    confusion = confusion_matrix(truth, detections, row.score_threshold)
    issues = find_label_errors(truth, detections)
    gallery = gallery_ids(records / IMAGE_INDEX_FILE)
    folder = layout.evaluation_dir(settings, row.id)
    sizes = {int(image["id"]): (image["width"], image["height"]) for image in truth["images"]}
    findings = [
        {
            **i.model_dump(mode="json"),
            "gallery_id": gallery.get(i.file_name),
            "width": sizes[i.image_id][0],
            "height": sizes[i.image_id][1],
        }
        for i in issues
    ]
    write_json(findings, folder / LABEL_ERRORS_FILE)
    worst = worst_images(truth, detections, confusion.image_errors, gallery, row.score_threshold)
    write_json(worst, folder / IMAGES_FILE)
    share(settings, evaluation_prefix(row.id), folder)  # the API may run on another machine
    result = EvaluationReport(
        metrics=coco_metrics(truth, detections).model_copy(update={"segmentation": segmentation}),
        confusion=confusion,
        format=row.format,
        split=row.split,
        ms_per_image=found.ms_per_image,
        detection_threshold=floor,
        ignored_classes=ignored,
        label_errors=dict(Counter(i.kind for i in issues if i.confidence >= CONFIDENT)),
    )
    return result.model_dump(mode="json")
