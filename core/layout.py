"""The data directory's layout: every path the API and the worker share, named once.

DATA_DIR/uploads/<id>.part                   an upload being received (removed or renamed when it ends)
DATA_DIR/datasets/<id>/upload.zip            the accepted upload (for a fixed version: made from its parent)
DATA_DIR/datasets/<id>/fixes.json            a fixed version's parent and fixes (its upload is made from them)
DATA_DIR/datasets/<id>/tfrecords/            the converted records (effdet's shards, ground truth, dataset.json,
                                             images.jsonl: the image index the gallery reads)
DATA_DIR/datasets/<id>/.convert-<holder>-*/  one conversion attempt's scratch folder (removed afterwards)
DATA_DIR/datasets/<id>/logs/worker.log       tracebacks of conversions that crashed
DATA_DIR/runs/<job_id>/                      a job's run dir: config.yaml, checkpoints/, logs/, metrics.json
DATA_DIR/models/<model_id>/                  saved_model/ (and model.tflite) of an exported model version
DATA_DIR/checkpoints/                        pretrained checkpoints the operator put there (jobs name them)
DATA_DIR/evaluations/<id>/                   an evaluation's label_errors.json and images.json (worst images first)
"""

from __future__ import annotations

from pathlib import Path

from core.settings import Settings
from effdet.layout import TFLITE_FILE, TRAIN_LOG

UPLOAD_FILE = "upload.zip"
RECORDS_DIR = "tfrecords"
SCRATCH_PREFIX = ".convert-"
WORKER_LOG = "logs/worker.log"
SAVED_MODEL_DIR = "saved_model"
LABEL_ERRORS_FILE = "label_errors.json"
FIXES_FILE = "fixes.json"
IMAGES_FILE = "images.json"


def uploads_dir(settings: Settings) -> Path:
    """Where uploads are streamed while they arrive."""
    return settings.folder("uploads")


def dataset_dir(settings: Settings, dataset_id: str) -> Path:
    """The folder of one dataset (upload, records, scratch folders, logs)."""
    return settings.folder("datasets") / dataset_id


def upload_path(settings: Settings, dataset_id: str) -> Path:
    """The accepted zip of a dataset, as the worker expects it."""
    return dataset_dir(settings, dataset_id) / UPLOAD_FILE


def records_dir(settings: Settings, dataset_id: str) -> Path:
    """The converted records of a dataset (published by one rename when the conversion ends)."""
    return dataset_dir(settings, dataset_id) / RECORDS_DIR


def run_dir(settings: Settings, job_id: str) -> Path:
    """The folder of one training run (checkpoints, logs, metrics); never shared between jobs."""
    return settings.folder("runs") / job_id


def train_log(settings: Settings, job_id: str) -> Path:
    """The run's JSON-lines training log."""
    return run_dir(settings, job_id) / TRAIN_LOG


def model_dir(settings: Settings, model_id: str) -> Path:
    """The folder of an exported model version (saved_model/, model.tflite)."""
    return settings.folder("models") / model_id


def evaluation_dir(settings: Settings, evaluation_id: str) -> Path:
    """The folder of one evaluation's findings and per-image detections (too big for its row)."""
    return settings.folder("evaluations") / evaluation_id


def checkpoints_dir(settings: Settings) -> Path:
    """Where the operator puts pretrained checkpoints."""
    return settings.folder("checkpoints")


def saved_model_dir(model_folder: Path) -> Path:
    """The SavedModel inside a model version's folder (`ModelVersion.path`)."""
    return model_folder / SAVED_MODEL_DIR


def tflite_file(model_folder: Path) -> Path:
    """The TFLite model inside a model version's folder, when one was exported."""
    return model_folder / TFLITE_FILE
