"""Pretrained checkpoints the operator put in DATA_DIR/checkpoints: listed by name with what each is (format, the
variants it fits, whether a job can use it), read from the checkpoint files alone (effdet.checkpoint_index: no
TensorFlow, no model built), and resolved and checked against a job's variant."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from app.schemas import CheckpointPublic
from app.storage import tree_size
from core.layout import checkpoints_dir
from core.settings import Settings
from core.store import sync_checkpoints
from effdet.checkpoint_fit import NamedCheckpoint, fit_model, fitting_variants, name_checkpoint
from effdet.checkpoint_index import CheckpointIndexError, find_prefix, read_contents
from effdet.config import ModelConfig
from effdet.layout import CHECKPOINT_DIR, WEIGHTS_DIR

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
RUN_SUBDIRS = (WEIGHTS_DIR, CHECKPOINT_DIR)


def checkpoint_prefix(path: Path) -> Path | None:
    """The checkpoint an entry of the folder stands for: a prefix, or the latest checkpoint of a folder or of a
    run's weights/ or checkpoints/ (the order effdet's resolve_checkpoint follows)."""
    if not path.is_dir():
        return path if Path(f"{path}.index").is_file() else None
    for folder in (path / WEIGHTS_DIR, path / CHECKPOINT_DIR, path):
        if folder.is_dir() and (prefix := find_prefix(folder)) is not None:
            return prefix
    return None


@lru_cache(maxsize=256)
def _named(prefix: Path, stamp: tuple[int, int]) -> NamedCheckpoint:
    """The checkpoint's variables, cached while its index file is unchanged (stamp: its mtime and size)."""
    return name_checkpoint(read_contents(prefix))


def read_checkpoint(prefix: Path) -> NamedCheckpoint:
    """The variables of the checkpoint at `prefix`; CheckpointIndexError when it cannot be read."""
    try:
        stat = Path(f"{prefix}.index").stat()
    except OSError as exc:
        raise CheckpointIndexError(f"cannot read {prefix.name}.index: {exc.strerror or exc}") from exc
    return _named(prefix, (stat.st_mtime_ns, stat.st_size))


def _entry(name: str, prefix: Path, size: int, kind: str) -> CheckpointPublic:
    """The listing of one checkpoint: its format and the variants it fits, read from its files."""
    try:
        named = read_checkpoint(prefix)
    except CheckpointIndexError as exc:
        return CheckpointPublic(name=name, format="unreadable", size_bytes=size, usable=False, note=str(exc))
    variants = fitting_variants(named)
    note = None if variants else "fits no EfficientDet variant: its backbone is incomplete or of other widths"
    return CheckpointPublic(
        name=name,
        format=named.format.value,
        layout=kind,
        size_bytes=size,
        usable=bool(variants),
        variants=variants,
        note=note,
    )


def _folder_entry(folder: Path) -> CheckpointPublic:
    size = tree_size(folder)
    prefix = checkpoint_prefix(folder)
    if prefix is not None:
        kind = "run-dir" if prefix.parent != folder else "checkpoint-dir"
        return _entry(folder.name, prefix, size, kind)
    if (folder / "saved_model.pb").is_file():
        note = "a SavedModel cannot be fine-tuned; put its training checkpoint here instead"
        return CheckpointPublic(name=folder.name, format="saved_model", size_bytes=size, usable=False, note=note)
    note = "no checkpoint (.index file) found inside"
    return CheckpointPublic(name=folder.name, format="unknown", size_bytes=size, usable=False, note=note)


def list_checkpoints(settings: Settings) -> list[CheckpointPublic]:
    """Every entry of the checkpoint folder, sorted by name (hidden files and checkpoint shards folded in)."""
    sync_checkpoints(settings)
    entries = []
    for path in sorted(checkpoints_dir(settings).iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            entries.append(_folder_entry(path))
        elif path.suffix == ".index":
            prefix = path.with_suffix("")
            size = sum(p.stat().st_size for p in path.parent.glob(f"{prefix.name}.*") if p.is_file())
            entries.append(_entry(prefix.name, prefix, size, "prefix"))
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


def misfit(path: Path, model: ModelConfig) -> str | None:
    """Why the checkpoint at `path` (a name find_checkpoint resolved) cannot start a model built from `model` (a
    job's settings), or None when it fits."""
    prefix = checkpoint_prefix(path)
    if prefix is None:
        return f"{path.name} holds no checkpoint"
    named = read_checkpoint(prefix)
    fit = fit_model(named, model)
    if fit.fits:
        return None
    variants = ", ".join(fitting_variants(named)) or "no variant"
    first = (fit.mismatched or [f"{name} is missing" for name in fit.missing])[0]
    count = len(fit.mismatched) + len(fit.missing)
    return (
        f"checkpoint {path.name!r} ({named.format.value}) fits {variants}, not this job's {model.name}: {count} "
        f"variables differ, e.g. {first}; choose the model it fits, or another checkpoint"
    )
