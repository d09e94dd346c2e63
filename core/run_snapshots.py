"""A training run's folder in a bucket store, as snapshots, so a job outlives the machine that ran it.

After each checkpoint the worker sends the run's files (config, the newest checkpoint, logs, best weights) as
the tree runs/<job>/<snapshot>, then points runs/<job>/latest at it and removes the one before: the pointer
always names a whole snapshot. A worker that takes the job over on another machine starts from the newest
snapshot, and the API reads the run's logs from it. With the data dir as the store the run folder itself is
shared, and nothing here sends or fetches anything.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from pathlib import Path

from core import layout
from core.settings import Settings
from core.store import NotInStoreError, ObjectStore, get_store, run_prefix
from effdet.layout import CHECKPOINT_DIR, TRAIN_LOG

LATEST = "latest"
COPIED_DIRS = ("logs",)
"""Folders whose files are copied, not linked, into a snapshot: they are appended to while it is sent."""

_CHECKPOINT_STATE = re.compile(r'^model_checkpoint_path:\s*"(?:.*/)?ckpt-(\d+)"', re.MULTILINE)


def local_step(run: Path) -> int | None:
    """The step of the run folder's newest checkpoint (from TensorFlow's state file), or None."""
    state = run / CHECKPOINT_DIR / "checkpoint"
    if not state.is_file():
        return None
    found = _CHECKPOINT_STATE.search(state.read_text())
    return int(found.group(1)) if found else None


def _latest(settings: Settings, job_id: str) -> tuple[int, str] | None:
    """The newest snapshot's step and name."""
    text = get_store(settings).get_text(f"{run_prefix(job_id)}/{LATEST}")
    if not text:
        return None
    step, _, name = text.strip().partition(" ")
    return int(step), name


def _stage(run: Path, step: int, staging: Path) -> None:
    """Link (or, for logs, copy) into staging every file of the run but the checkpoints older than `step`."""
    keep = f"ckpt-{step}."
    for path in run.rglob("*"):
        relative = path.relative_to(run)
        if not path.is_file():
            continue
        if relative.parts[0] == CHECKPOINT_DIR and path.name.startswith("ckpt-") and not path.name.startswith(keep):
            continue
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if relative.parts[0] in COPIED_DIRS:
            shutil.copyfile(path, target)
        else:
            target.hardlink_to(path)


def push(settings: Settings, job_id: str, run: Path, step: int) -> None:
    """Send the run folder as its newest snapshot (the checkpoint of `step` and everything beside it)."""
    if settings.storage_url is None:
        return
    store = get_store(settings)
    previous = _latest(settings, job_id)
    name = f"{step:09d}-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(dir=run.parent, prefix=f".{run.name}-push-") as staging:
        _stage(run, step, Path(staging))
        store.publish(f"{run_prefix(job_id)}/{name}", Path(staging))
    store.put_text(f"{run_prefix(job_id)}/{LATEST}", f"{step} {name}")
    if previous is not None and previous[1] != name:
        store.remove(f"{run_prefix(job_id)}/{previous[1]}")


def pull(settings: Settings, job_id: str, run: Path) -> int | None:
    """Bring the newest snapshot into the run folder when it is ahead of this machine's own checkpoint (a job
    another machine started); returns the step brought, or None when the local folder is as new."""
    if settings.storage_url is None:
        return None
    latest = _latest(settings, job_id)
    if latest is None or (local_step(run) or -1) >= latest[0]:
        return None
    store = get_store(settings)
    assert isinstance(store, ObjectStore)
    prefix = f"{run_prefix(job_id)}/{latest[1]}"
    fetched = store.fetch(prefix)
    shutil.rmtree(run / CHECKPOINT_DIR, ignore_errors=True)
    shutil.copytree(fetched, run, dirs_exist_ok=True)
    store.evict(prefix)  # the run folder holds it now
    return latest[0]


def train_log(settings: Settings, job_id: str) -> Path:
    """The run's training log on this machine: in the run folder with the data dir as the store, else this
    machine's copy of the newest snapshot's log alone (not its checkpoint), which may not exist yet."""
    local = layout.run_dir(settings, job_id) / TRAIN_LOG
    if settings.storage_url is None:
        return local
    latest = _latest(settings, job_id)
    if latest is None:
        return local
    store = get_store(settings)
    assert isinstance(store, ObjectStore)
    cached = settings.data_dir / "cache" / run_prefix(job_id)
    target = cached / latest[1] / TRAIN_LOG
    if not target.is_file():
        for older in cached.glob("*"):  # the log of an earlier snapshot is a prefix of this one's
            shutil.rmtree(older, ignore_errors=True)
        try:
            store.fetch_file(f"{run_prefix(job_id)}/{latest[1]}/{TRAIN_LOG}", target)
        except NotInStoreError:
            return local
    return target
