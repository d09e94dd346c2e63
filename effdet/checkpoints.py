"""Checkpoints: the run directory layout, pretrained loading by variable path, freezing by regex.

A run's own training checkpoints are TF2 object-based (model, optimizer, EMA, step) for exact resume. Weights
meant to be shared (the end of a run, the best by mAP) are TF1-style name -> tensor checkpoints, as google/automl's
releases are, whose names are variable paths such as `efficientnet-b0/stem/conv2d/kernel`, with the moving average
under `<path>/ExponentialMovingAverage`. `load_pretrained` reads those two and automl's TF2 checkpoints (named by
effdet.checkpoint_fit), maps by path, prefers the moving average and skips shape mismatches.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import keras
import tensorflow as tf
from pydantic import BaseModel

from effdet.checkpoint_fit import EMA_SUFFIX, name_checkpoint
from effdet.checkpoint_index import CheckpointIndexError, find_prefix, read_contents
from effdet.config import Config
from effdet.layout import BEST_DIR, CHECKPOINT_DIR, CONFIG_FILE, WEIGHTS_DIR, WEIGHTS_PREFIX

log = logging.getLogger(__name__)

CLASS_PREDICT = "class_net/class-predict/"


class CheckpointError(ValueError):
    """A checkpoint that cannot be found or does not fit the model; the message says what to do."""


class LoadReport(BaseModel):
    """What `load_pretrained` did: counts, and the paths it skipped and why."""

    source: str
    format: str
    loaded: int
    from_moving_average: int
    shape_mismatch: list[str]
    missing: list[str]

    def summary(self) -> str:
        """One line for the log."""
        return (
            f"pretrained {self.source} ({self.format}): {self.loaded} variables loaded "
            f"({self.from_moving_average} from moving averages), {len(self.shape_mismatch)} skipped for shape, "
            f"{len(self.missing)} not in the checkpoint"
        )


def frozen_paths(variables: Sequence[keras.Variable], expr: str | None) -> set[str]:
    """Paths matched from their start by `expr` (automl's re.match semantics); none when expr is empty."""
    if not expr:
        return set()
    try:
        pattern = re.compile(expr)
    except re.error as exc:
        raise CheckpointError(f"var_freeze_expr {expr!r} is not a valid regular expression: {exc}") from exc
    matched = {v.path for v in variables if pattern.match(v.path)}
    if not matched:
        raise CheckpointError(
            f"var_freeze_expr {expr!r} matches no variable; paths start with e.g. "
            f"{sorted({v.path.split('/')[0] for v in variables})}"
        )
    return matched


def named_weights(model: keras.Model, averages: Mapping[str, tf.Tensor] | None = None) -> dict[str, tf.Tensor]:
    """Every model variable by path, plus `<path>/ExponentialMovingAverage` for the averaged ones (automl's naming)."""
    tensors: dict[str, tf.Tensor] = {v.path: tf.convert_to_tensor(v) for v in model.variables}
    for path, value in (averages or {}).items():
        tensors[path + EMA_SUFFIX] = value
    return tensors


def save_named_weights(tensors: Mapping[str, tf.Tensor], prefix: Path) -> Path:
    """Write a TF1-style name -> tensor checkpoint at `prefix` (readable by tf.train.load_checkpoint)."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    names = sorted(tensors)
    tf.raw_ops.SaveV2(
        prefix=str(prefix),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tensors[n] for n in names],
    )
    return prefix


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint prefix from a prefix, a directory holding one, or a run directory (its final weights first)."""
    if path.is_dir():
        for candidate in (path / WEIGHTS_DIR, path / CHECKPOINT_DIR, path):
            prefix = find_prefix(candidate) if candidate.is_dir() else None
            if prefix is not None:
                return prefix
        raise CheckpointError(f"no checkpoint found in directory {path}")
    if Path(f"{path}.index").exists():
        return path
    raise CheckpointError(f"pretrained checkpoint {path} not found (give a checkpoint prefix, its folder or a run dir)")


def tracked_weights(model: keras.Model) -> dict[str, keras.Variable]:
    """The model's variables keyed by path, as a training checkpoint tracks them (Keras 3 layers kept in
    Python lists are not checkpoint dependencies, so the model object itself cannot be the root)."""
    return {v.path: v for v in model.variables}


def read_named_values(prefix: Path) -> tuple[str, dict[str, tf.Tensor]]:
    """(format, path -> value) of a checkpoint of any family, moving averages at `<path>/ExponentialMovingAverage`."""
    try:
        named = name_checkpoint(read_contents(prefix))
    except CheckpointIndexError as exc:
        raise CheckpointError(f"{prefix} is not a readable checkpoint: {exc}") from exc
    reader = tf.train.load_checkpoint(str(prefix))
    values = {path: reader.get_tensor(key) for path, key in named.values.items()}
    values.update({path + EMA_SUFFIX: reader.get_tensor(key) for path, key in named.averages.items()})
    return named.format.value, values


def load_pretrained(model: keras.Model, path: Path | str) -> LoadReport:
    """Load weights by variable path, preferring moving averages; shape mismatches are skipped and logged."""
    prefix = resolve_checkpoint(Path(path))
    fmt, values = read_named_values(prefix)
    loaded = averaged = 0
    mismatch: list[str] = []
    missing: list[str] = []
    for variable in model.variables:
        key = variable.path + EMA_SUFFIX if variable.path + EMA_SUFFIX in values else variable.path
        if key not in values:
            missing.append(variable.path)
            continue
        value = values[key]
        if tuple(value.shape) != tuple(variable.shape):
            mismatch.append(f"{variable.path}: checkpoint {tuple(value.shape)}, model {tuple(variable.shape)}")
            continue
        variable.assign(tf.cast(value, variable.dtype))
        loaded += 1
        averaged += key.endswith(EMA_SUFFIX)
    if loaded == 0:
        raise CheckpointError(
            f"{prefix} holds none of this model's variables (first model path {model.variables[0].path!r}); "
            "is it a checkpoint of another model variant?"
        )
    report = LoadReport(
        source=str(prefix),
        format=fmt,
        loaded=loaded,
        from_moving_average=averaged,
        shape_mismatch=mismatch,
        missing=missing,
    )
    log.info(report.summary())
    if any(m.startswith(CLASS_PREDICT) for m in mismatch):
        log.info("class-prediction variables re-initialised: the checkpoint has a different num_classes")
    for line in mismatch:
        log.info("skipped (shape): %s", line)
    return report


def save_run_config(run_dir: Path, config: Config) -> Config:
    """Write the run's config.yaml, the one copy of the config that training, evaluation and export read, and
    return it as read back; a run dir holding another model cannot take this one (its checkpoints would not fit).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CONFIG_FILE
    if path.exists():
        saved = Config.from_yaml(path)
        if saved.model != config.model:
            raise CheckpointError(
                f"{run_dir} holds a run of {saved.model.name} with other model settings; "
                "use a new run_dir to train a different model"
            )
    temp = path.with_suffix(".tmp")
    temp.write_text(config.to_yaml())
    temp.replace(path)
    return Config.from_yaml(path)


def load_run_model(run_dir: Path, which: str = "final") -> tuple[Config, keras.Model]:
    """The model of a run with its averaged weights: 'final' (end of training), 'best' (by mAP) or 'latest'."""
    from effdet.model.efficientdet import build_model

    config_path = run_dir / CONFIG_FILE
    if not config_path.exists():
        raise CheckpointError(f"{run_dir} is not a training run directory (no {CONFIG_FILE})")
    config = Config.from_yaml(config_path)
    model = build_model(config)
    folders = {"final": run_dir / WEIGHTS_DIR, "best": run_dir / BEST_DIR, "latest": run_dir / CHECKPOINT_DIR}
    if which not in folders:
        raise CheckpointError(f"unknown checkpoint choice {which!r}; use one of {sorted(folders)}")
    folder = folders[which]
    if which == "final" and not (folder / f"{WEIGHTS_PREFIX}.index").exists():
        folder = folders["latest"]
    load_pretrained(model, folder)
    return config, model
