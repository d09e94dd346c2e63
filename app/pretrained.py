"""Pretrained checkpoints the operator put in DATA_DIR/checkpoints: listed by name with a format guessed from
the files alone (no TensorFlow in the API), and resolved for a job's `pretrained`."""

from __future__ import annotations

from pathlib import Path

from app.schemas import CheckpointPublic
from app.storage import tree_size
from core.layout import checkpoints_dir
from core.settings import Settings
from effdet.layout import CHECKPOINT_DIR, WEIGHTS_DIR

OBJECT_GRAPH_KEY = b"_CHECKPOINTABLE_OBJECT_GRAPH"
INDEX_PROBE_BYTES = 16 * 2**20
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
RUN_SUBDIRS = (WEIGHTS_DIR, CHECKPOINT_DIR)


def _index_format(index: Path) -> str:
    """tf2-checkpoint (object graph) or tf1-checkpoint (name -> tensor), read from the index's key table."""
    with index.open("rb") as handle:
        head = handle.read(INDEX_PROBE_BYTES)
    return "tf2-checkpoint" if OBJECT_GRAPH_KEY in head else "tf1-checkpoint"


def _has_checkpoint(folder: Path) -> bool:
    return (folder / "checkpoint").is_file() or any(folder.glob("*.index"))


def _prefix_entry(index: Path) -> CheckpointPublic:
    prefix = index.with_suffix("")
    size = sum(p.stat().st_size for p in index.parent.glob(f"{prefix.name}.*") if p.is_file())
    return CheckpointPublic(name=prefix.name, format=_index_format(index), size_bytes=size, usable=True)


def _folder_entry(folder: Path) -> CheckpointPublic:
    size = tree_size(folder)
    if _has_checkpoint(folder):
        return CheckpointPublic(name=folder.name, format="checkpoint-dir", size_bytes=size, usable=True)
    if any(_has_checkpoint(folder / sub) for sub in RUN_SUBDIRS if (folder / sub).is_dir()):
        return CheckpointPublic(name=folder.name, format="run-dir", size_bytes=size, usable=True)
    if (folder / "saved_model.pb").is_file():
        note = "a SavedModel cannot be fine-tuned; put its training checkpoint here instead"
        return CheckpointPublic(name=folder.name, format="saved_model", size_bytes=size, usable=False, note=note)
    note = "no checkpoint (.index file) found inside"
    return CheckpointPublic(name=folder.name, format="unknown", size_bytes=size, usable=False, note=note)


def list_checkpoints(settings: Settings) -> list[CheckpointPublic]:
    """Every entry of the checkpoint folder, sorted by name (hidden files and checkpoint shards folded in)."""
    entries = []
    for path in sorted(checkpoints_dir(settings).iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            entries.append(_folder_entry(path))
        elif path.suffix == ".index":
            entries.append(_prefix_entry(path))
        elif path.name.endswith(ARCHIVE_SUFFIXES):
            size = path.stat().st_size
            note = "an archive; unpack it into the checkpoint folder"
            entries.append(CheckpointPublic(name=path.name, format="archive", size_bytes=size, usable=False, note=note))
    return entries


def find_checkpoint(settings: Settings, name: str) -> Path | None:
    """The path to give effdet's resolve_checkpoint for a usable checkpoint called name, or None."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    for entry in list_checkpoints(settings):
        if entry.name == name and entry.usable:
            return (checkpoints_dir(settings) / name).resolve()
    return None
