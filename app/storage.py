"""The data directory's layout (one place names every path the API and the worker share) and safe file moves.

DATA_DIR/uploads/<id>.part              an upload being received (removed or renamed when it ends)
DATA_DIR/datasets/<id>/upload.zip       the accepted upload; the worker unpacks it into raw/, writes tfrecords/
DATA_DIR/runs/<job_id>/                 a job's checkpoints/, logs/train.jsonl, metrics.json
DATA_DIR/models/<model_id>/             saved_model/ and model.tflite of an exported model version
DATA_DIR/checkpoints/                   pretrained checkpoints the operator put there (jobs name them)
"""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

from app.settings import Settings

UPLOAD_FILE = "upload.zip"
RAW_DIR = "raw"
TFRECORDS_DIR = "tfrecords"
LOGS_DIR = "logs"
TRAIN_LOG = "train.jsonl"
SAVED_MODEL_DIR = "saved_model"
TFLITE_FILE = "model.tflite"


def uploads_dir(settings: Settings) -> Path:
    """Where uploads are streamed while they arrive."""
    return settings.folder("uploads")


def dataset_dir(settings: Settings, dataset_id: str) -> Path:
    """The folder of one dataset (upload, unpacked files, TFRecords)."""
    return settings.folder("datasets") / dataset_id


def upload_path(settings: Settings, dataset_id: str) -> Path:
    """The accepted zip of a dataset, as the worker expects it."""
    return dataset_dir(settings, dataset_id) / UPLOAD_FILE


def run_dir(settings: Settings, job_id: str) -> Path:
    """The folder of one training run (checkpoints, logs, metrics)."""
    return settings.folder("runs") / job_id


def train_log(settings: Settings, job_id: str) -> Path:
    """The run's JSON-lines training log."""
    return run_dir(settings, job_id) / LOGS_DIR / TRAIN_LOG


def model_dir(settings: Settings, model_id: str) -> Path:
    """The default folder of an exported model version (ModelVersion.path is authoritative)."""
    return settings.folder("models") / model_id


def checkpoints_dir(settings: Settings) -> Path:
    """Where the operator puts pretrained checkpoints."""
    return settings.folder("checkpoints")


def move_atomic(source: Path, target: Path) -> Path:
    """Move source to target by rename (same file system), creating target's folder; never a partial target."""
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    return target


def remove(path: Path) -> None:
    """Delete a file or folder if it exists (cleanup after a rejected upload or a deleted dataset)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def tree_size(path: Path) -> int:
    """Total bytes of the regular files under path (or of path itself)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


class _ChunkSink(io.RawIOBase):
    """A write-only, unseekable file that hands back what was written (zipfile then streams)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = bytes(data)
        self._chunks.append(chunk)
        return len(chunk)

    def drain(self) -> bytes:
        data, self._chunks = b"".join(self._chunks), []
        return data


def zip_stream(folder: Path, root: str, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
    """A zip of folder (entries under root/) produced piece by piece, never whole in memory."""
    sink = _ChunkSink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.is_symlink():
                continue
            info = zipfile.ZipInfo.from_file(path, f"{root}/{path.relative_to(folder).as_posix()}")
            with path.open("rb") as source, archive.open(info, "w", force_zip64=True) as target:
                while chunk := source.read(chunk_bytes):
                    target.write(chunk)
                    yield sink.drain()
    yield sink.drain()
