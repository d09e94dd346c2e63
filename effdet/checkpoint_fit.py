"""Which variable each tensor of a checkpoint is, in all three families `pretrained` accepts, and which variants a
checkpoint fits, without TensorFlow (effdet.checkpoint_index reads the files).

- TF1 name->tensor checkpoints (google/automl's releases, our runs' final and best weights): keys are variable
  paths such as `efficientnet-b0/stem/conv2d/kernel`, moving averages at `<path>/ExponentialMovingAverage`.
- google/automl's TF2 object-based checkpoints (`EfficientDetNet.save_weights`, the `ckpt-N` of its training loop):
  the object graph gives each variable's name when saved, which is the same path; its training loop keeps the
  moving averages as the optimizer's `average` slots.
- Our training checkpoints (object-based): variables under `weights/<escaped path>`, averages under
  `ema/shadows/<escaped path>`.

A checkpoint fits a variant when the variant's whole backbone is there with its shapes and no other variable it
holds has another shape than the variant's: the BiFPN and heads may be absent (an ImageNet backbone: they start
fresh), and the prediction layers may differ (another num_classes or anchor count re-initialises them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from effdet.checkpoint_index import VALUE_SUFFIX, CheckpointContents
from effdet.config import MODEL_NAMES, ModelConfig, get_config
from effdet.model.structure import SEG_HEAD, seg_classifier, seg_upsample_name, variable_specs

EMA_SUFFIX = "/ExponentialMovingAverage"
TRAINING_WEIGHTS = "weights"
TRAINING_AVERAGES = "ema/shadows/"
AVERAGE_SLOTS = ("average",)
"""Optimizer slots that hold a variable's moving average (tfa.optimizers.MovingAverage, as automl's training uses)."""
PREDICTION_LAYERS = ("class_net/class-predict/", "box_net/box-predict/")
"""Variables whose shapes follow num_classes and the anchors: re-initialised when they differ, never a misfit (so
is the segmentation head's classifier, `seg_classifier`, whose shape follows seg_num_classes)."""
_KEY_SCOPE = "/.ATTRIBUTES/"


class CheckpointFormat(StrEnum):
    """The checkpoint families `pretrained` loads."""

    TF1 = "tf1-checkpoint"
    AUTOML_TF2 = "automl-tf2-checkpoint"
    TRAINING = "effdet-training-checkpoint"


@dataclass(frozen=True)
class NamedCheckpoint:
    """A checkpoint's variables by path: the key of each value and, where it has one, of its moving average."""

    format: CheckpointFormat
    values: dict[str, str]
    averages: dict[str, str]
    shapes: dict[str, tuple[int, ...]]


def _unescape(name: str) -> str:
    """Undo TF's escaping of checkpoint dependency names ('/' is written '.S', '.' is written '..')."""
    out, chars = [], iter(name)
    for char in chars:
        out.append({"S": "/", ".": "."}.get(next(chars, ""), "") if char == "." else char)
    return "".join(out)


def _training_path(key: str, root: str) -> str | None:
    """The variable path of one of our training checkpoint's keys under `root`, or None."""
    if not key.startswith(root) or not key.endswith(VALUE_SUFFIX):
        return None
    return _unescape(key[len(root) : -len(VALUE_SUFFIX)])


def _variable_name(full_name: str) -> str:
    """A saved variable name as a path: no ':0' output suffix."""
    return full_name.removesuffix(":0")


_SEG_KEY = re.compile(r"seg_head/(?:(con2d_ts)/(\d+)|(con2d_t_bns)/(\d+)|(head_transpose))/(\w+)/\.ATTRIBUTES/")


def _seg_head_paths(keys: list[str]) -> dict[str, str]:
    """Checkpoint key -> variable path of automl's segmentation head, read from the keys (`seg_head/con2d_ts/1/...`).

    automl's layers are unnamed, so their saved names carry Keras 2's process-wide counter
    (`conv2d_transpose_5` in a process that built a model before); the attribute path does not."""
    matches = {key: m for key in keys if (m := _SEG_KEY.match(key))}
    steps = len({m[2] for m in matches.values() if m[1]})
    paths = {}
    for key, m in matches.items():
        layer = seg_upsample_name(int(m[2])) if m[1] else f"bn_{m[4]}" if m[3] else seg_upsample_name(steps)
        paths[key] = f"{SEG_HEAD}/{layer}/{m[6]}"
    return paths


def name_checkpoint(contents: CheckpointContents) -> NamedCheckpoint:
    """The variables of a checkpoint of any family by path."""
    shapes = {key: entry.shape for key, entry in contents.tensors.items()}
    if contents.variables is None:
        values = {key: key for key in shapes if not key.endswith(EMA_SUFFIX)}
        averages = {key: key + EMA_SUFFIX for key in values if key + EMA_SUFFIX in shapes}
        return NamedCheckpoint(CheckpointFormat.TF1, values, averages, {k: shapes[k] for k in values})
    if any(key.startswith(TRAINING_WEIGHTS + "/") for key in shapes):
        values, averages = {}, {}
        for key in shapes:
            if (path := _training_path(key, TRAINING_WEIGHTS + "/")) is not None:
                values[path] = key
            elif (path := _training_path(key, TRAINING_AVERAGES)) is not None:
                averages[path] = key
        return NamedCheckpoint(CheckpointFormat.TRAINING, values, averages, {p: shapes[k] for p, k in values.items()})
    values, averages = {}, {}
    seg_paths = _seg_head_paths([variable.key for variable in contents.variables])
    for variable in contents.variables:
        path = seg_paths.get(variable.key) or _variable_name(variable.full_name)
        if not path or variable.key not in shapes:
            continue
        values[path] = variable.key
        slot = next((variable.slots[name] for name in AVERAGE_SLOTS if name in variable.slots), None)
        if slot is not None and slot in shapes:
            averages[path] = slot
    return NamedCheckpoint(CheckpointFormat.AUTOML_TF2, values, averages, {p: shapes[k] for p, k in values.items()})


@dataclass(frozen=True)
class VariantFit:
    """How a checkpoint meets one variant: the backbone variables it lacks, the variables it holds in another shape
    (prediction layers aside), the variables that start fresh and the prediction layers re-initialised."""

    model: str
    missing: list[str]
    mismatched: list[str]
    fresh: list[str]
    reinitialised: list[str]

    @property
    def fits(self) -> bool:
        """Whether the variant loads from the checkpoint: its backbone whole, nothing in another shape."""
        return not self.missing and not self.mismatched


def fit_variant(named: NamedCheckpoint, model: str) -> VariantFit:
    """How the checkpoint's variables meet the preset variant `model`'s (default anchors and classes)."""
    return fit_model(named, get_config(model).model)


def fit_model(named: NamedCheckpoint, config: ModelConfig) -> VariantFit:
    """How the checkpoint's variables meet those of a model built from `config` (a job's own settings)."""
    missing: list[str] = []
    mismatched: list[str] = []
    fresh: list[str] = []
    reinitialised: list[str] = []
    classifiers = (*PREDICTION_LAYERS, seg_classifier(config))
    for path, shape in variable_specs(config).items():
        found = named.shapes.get(path)
        if path.startswith(classifiers):
            if found != shape:
                reinitialised.append(path)
        elif found is None:
            (missing if path.startswith(config.backbone_name + "/") else fresh).append(path)
        elif found != shape:
            mismatched.append(f"{path}: checkpoint {found}, model {shape}")
    return VariantFit(
        model=config.name, missing=missing, mismatched=mismatched, fresh=fresh, reinitialised=reinitialised
    )


def fitting_variants(named: NamedCheckpoint) -> list[str]:
    """The variants the checkpoint fits (usually one: the backbone and BiFPN widths tell the variants apart)."""
    return [name for name in MODEL_NAMES if fit_variant(named, name).fits]
