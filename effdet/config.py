"""Hyperparameters: google/automl's names and defaults, typed, with variant presets and overrides.

One config tree (`Config`) with the settings grouped by who reads them (model architecture, input
pipeline, loss, training, evaluation), while the boundary speaks automl's flat names: an override string
`'num_classes=1,image_size=640x384,aspect_ratios=1.0*2.0*0.5,nms_configs.method=hard'`, a YAML document in
automl's format, or a dict. Every problem in an override is reported at once in one `ConfigError`.
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, field_validator

ImageSize = tuple[int, int]
"""(height, width) in pixels."""

Activation = Literal["swish", "silu", "swish_native", "relu", "relu6", "hswish", "mish", "gelu", "elu", "selu"]


class ConfigError(ValueError):
    """Every problem found in a set of hyperparameters, each a line that says what to fix."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{len(problems)} {noun} in hyperparameters:\n" + "\n".join(f"- {p}" for p in problems))


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def parse_image_size(value: Any) -> ImageSize:
    """Read automl's image_size (an int, a 'WxH' string or an (H, W) pair) as (height, width)."""
    if isinstance(value, bool):
        raise ValueError(f"image_size must be an int or 'WxH', not {value!r}")
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text.isdigit():
            return (int(text), int(text))
        parts = text.split("x")
        if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
            return (int(parts[1]), int(parts[0]))
        raise ValueError(f"image_size {value!r} is not an int or a 'WxH' string such as '640x384'")
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return (int(value[0]), int(value[1]))
    raise ValueError(f"image_size must be an int, a 'WxH' string or [height, width], not {value!r}")


def format_image_size(size: ImageSize) -> int | str:
    """automl's spelling of (height, width): an int when square, else 'WxH'."""
    height, width = size
    return height if height == width else f"{width}x{height}"


Head = Literal["object_detection", "segmentation"]


def _default_heads() -> list[Head]:
    return ["object_detection"]


AUTO = "auto"
"""The value of `aspect_ratios` or `anchor_scale` that asks for the k-means suggestion on the training boxes
(effdet.workflow.resolve_auto_anchors replaces it with numbers before a run's config.yaml is written)."""
Auto = Literal["auto"]


class ModelConfig(_Group):
    """Architecture: what `build_model` reads."""

    name: str = "efficientdet-d1"
    backbone_name: str = "efficientnet-b1"
    backbone_config: None = None
    act_type: Activation = "swish"
    image_size: ImageSize = (640, 640)
    num_classes: int = Field(90, ge=1)
    seg_num_classes: int = Field(3, ge=1)
    heads: list[Head] = Field(default_factory=_default_heads)
    min_level: int = Field(3, ge=1, le=5)
    max_level: int = Field(7, ge=3, le=10)
    num_scales: int = Field(3, ge=1)
    aspect_ratios: Annotated[list[float], Field(min_length=1)] | Auto = Field(default_factory=lambda: [1.0, 2.0, 0.5])
    anchor_scale: Annotated[float, Field(gt=0)] | Auto = 4.0
    is_training_bn: bool = True
    box_class_repeats: int = Field(3, ge=1)
    fpn_cell_repeats: int = Field(3, ge=1)
    fpn_num_filters: int = Field(88, ge=1)
    separable_conv: bool = True
    apply_bn_for_resampling: bool = True
    conv_after_downsample: bool = False
    conv_bn_act_pattern: bool = False
    fpn_name: Literal["bifpn"] | None = None
    fpn_weight_method: Literal["attn", "fastattn", "channel_attn", "channel_fastattn", "sum"] | None = None
    fpn_config: None = None
    survival_prob: float | None = Field(None, gt=0, le=1)
    data_format: Literal["channels_last"] = "channels_last"
    mean_rgb: float | list[float] = Field(default_factory=lambda: [0.485 * 255, 0.456 * 255, 0.406 * 255])
    stddev_rgb: float | list[float] = Field(default_factory=lambda: [0.229 * 255, 0.224 * 255, 0.225 * 255])
    scale_range: bool = False

    @field_validator("image_size", mode="before")
    @classmethod
    def _parse_image_size(cls, value: Any) -> ImageSize:
        return parse_image_size(value)

    @field_serializer("image_size")
    def _dump_image_size(self, value: ImageSize) -> int | str:
        return format_image_size(value)

    @field_validator("aspect_ratios", mode="before")
    @classmethod
    def _parse_aspect_ratios(cls, value: Any) -> Any:
        # automl's older format lists (w, h) pairs; a pair means the ratio w / h.
        if isinstance(value, list | tuple):
            return [v[0] / v[1] if isinstance(v, list | tuple) and len(v) == 2 else v for v in value]
        if isinstance(value, str) and value != AUTO:
            raise ValueError(
                f"aspect_ratios {value!r} is neither a list of ratios (width / height, e.g. [1.0, 2.0, 0.5]) nor "
                f"'{AUTO}' (k-means on the training boxes)"
            )
        return value

    @field_validator("aspect_ratios")
    @classmethod
    def _positive_ratios(cls, value: list[float] | Auto) -> list[float] | Auto:
        if isinstance(value, list) and any(r <= 0 for r in value):
            raise ValueError(f"aspect ratios (width / height) must be positive, got {value}")
        return value

    @field_validator("anchor_scale", mode="before")
    @classmethod
    def _parse_anchor_scale(cls, value: Any) -> Any:
        if isinstance(value, str) and value != AUTO:
            try:
                return float(value)
            except ValueError:
                raise ValueError(
                    f"anchor_scale {value!r} is neither a number (e.g. 4.0) nor '{AUTO}' (chosen on the training boxes)"
                ) from None
        return value

    @property
    def has_auto_anchors(self) -> bool:
        """Whether aspect_ratios or anchor_scale is still 'auto' (to be chosen on the training boxes)."""
        return self.aspect_ratios == AUTO or self.anchor_scale == AUTO

    @property
    def ratios(self) -> list[float]:
        """The aspect ratios; ValueError while they are 'auto' (resolve them first)."""
        if isinstance(self.aspect_ratios, str):
            raise ValueError(_UNRESOLVED.format(key="aspect_ratios"))
        return self.aspect_ratios

    @property
    def scale(self) -> float:
        """The anchor scale; ValueError while it is 'auto' (resolve it first)."""
        if isinstance(self.anchor_scale, str):
            raise ValueError(_UNRESOLVED.format(key="anchor_scale"))
        return self.anchor_scale

    @field_validator("mean_rgb", "stddev_rgb")
    @classmethod
    def _rgb_triplet(cls, value: float | list[float]) -> float | list[float]:
        if isinstance(value, list) and len(value) != 3:
            raise ValueError(f"give one number or three (R, G, B), got {len(value)}")
        return value

    @property
    def num_anchors(self) -> int:
        """Anchors per feature-map location."""
        return self.num_scales * len(self.ratios)

    @property
    def weight_method(self) -> str:
        """The BiFPN fusion actually used: automl's default is fast normalised fusion."""
        return self.fpn_weight_method or "fastattn"


_UNRESOLVED = (
    "{key} is still 'auto': effdet.workflow.resolve_auto_anchors chooses it on the training boxes before a "
    "model is built"
)


class InputConfig(_Group):
    """Input pipeline and augmentation: what the data side reads."""

    target_size: ImageSize | None = None
    """The size that scale jitter multiplies in training (automl: the eval size when training at another);
    None jitters around image_size. The network input stays image_size."""
    input_rand_hflip: bool = True
    jitter_min: float = Field(0.1, gt=0)
    jitter_max: float = Field(2.0, gt=0)
    autoaugment_policy: Literal["v0", "v1", "v2", "v3", "randaug"] | None = None
    grid_mask: bool = False
    sample_image: str | None = None
    label_map: dict[int, str] | Literal["coco", "voc", "waymo"] | None = None
    max_instances_per_image: int = Field(100, ge=1)
    skip_crowd_during_training: bool = True
    regenerate_source_id: bool = False
    dataset_type: str | None = None
    drop_remainder: bool = True
    tiles: int | str | None = None
    """Tiling for small objects in large images: a tile side in original pixels (e.g. 640) or a grid of
    columns x rows (e.g. '3x2'). Training also sees the overlapping crops, prediction runs on the whole image
    and the tiles and merges the boxes; None (default) works on the whole image only."""
    tile_overlap: float = Field(0.25, ge=0, le=0.75)
    """Share of a tile that overlaps its neighbour: make it cover the largest object so each lies whole in one."""
    tile_empty_ratio: float = Field(0.1, ge=0, le=1)
    """Share of the tiles without an object that training keeps (tiles with objects are always kept)."""

    @field_validator("target_size", mode="before")
    @classmethod
    def _parse_target_size(cls, value: Any) -> ImageSize | None:
        return None if value is None or value == "" else parse_image_size(value)

    @field_serializer("target_size")
    def _dump_target_size(self, value: ImageSize | None) -> int | str | None:
        return None if value is None else format_image_size(value)

    @field_validator("tiles", mode="before")
    @classmethod
    def _parse_tiles(cls, value: Any) -> Any:
        if value is None or value == "" or value is False:
            return None
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"tiles must be a tile side in pixels or a 'CxR' grid such as '3x2', not {value!r}")
        if isinstance(value, int):
            if value < 32:
                raise ValueError(f"tiles {value} is too small a tile; give a side of at least 32 pixels")
            return value
        match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", value)
        if not match or int(match[1]) < 1 or int(match[2]) < 1 or int(match[1]) * int(match[2]) < 2:
            raise ValueError(
                f"tiles {value!r} is not a grid of columns x rows with two tiles or more (e.g. '3x2'), nor a "
                "tile side in pixels (e.g. 640)"
            )
        return f"{int(match[1])}x{int(match[2])}"

    @property
    def tile_grid(self) -> tuple[int, int] | None:
        """(columns, rows) when tiles is a grid, else None."""
        if not isinstance(self.tiles, str):
            return None
        columns, rows = self.tiles.split("x")
        return int(columns), int(rows)


IouLossType = Literal["iou", "giou", "diou", "ciou"]


class LossConfig(_Group):
    """Focal and box losses (paper section 3; automl's det_model_fn), and automl's optional IoU box loss."""

    label_smoothing: float = Field(0.0, ge=0, lt=1)
    alpha: float = Field(0.25, ge=0, le=1)
    gamma: float = Field(1.5, ge=0)
    delta: float = Field(0.1, gt=0)
    box_loss_weight: float = Field(50.0, ge=0)
    iou_loss_type: IouLossType | None = None
    iou_loss_weight: float = Field(1.0, ge=0)


class TrainConfig(_Group):
    """Optimisation, schedule, regularisation and checkpoint handling."""

    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = Field(0.9, ge=0, lt=1)
    learning_rate: float = Field(0.08, gt=0)
    lr_warmup_init: float = Field(0.008, ge=0)
    lr_warmup_epoch: float = Field(1.0, ge=0)
    lr_decay_method: Literal["cosine", "stepwise", "polynomial", "constant"] = "cosine"
    first_lr_drop_epoch: float = Field(200.0, ge=0)
    second_lr_drop_epoch: float = Field(250.0, ge=0)
    poly_lr_power: float = Field(0.9, gt=0)
    clip_gradients_norm: float = Field(10.0, ge=0)
    num_epochs: int = Field(300, ge=1)
    weight_decay: float = Field(4e-5, ge=0)
    moving_average_decay: float = Field(0.9998, ge=0, lt=1)
    strategy: Literal["gpus"] | None = None
    mixed_precision: bool = False
    loss_scale: float | None = None
    var_freeze_expr: str | None = None
    var_freeze_steps: int | None = Field(None, ge=1)
    """Not automl's: with var_freeze_expr, freeze for the first this many steps only, then train every variable
    (frozen-then-unfrozen fine-tuning); None freezes for the whole run."""
    ckpt_var_scope: str | None = None
    skip_mismatch: bool = True
    map_freq: int = Field(5, ge=1)
    img_summary_steps: int | None = None
    grad_checkpoint: bool = False
    positives_momentum: float | None = Field(None, lt=1)
    """> 0: normalise the losses by a moving average of the positives with this momentum; < 0: by their mean
    over the replicas; None or 0: by the batch's own count (automl)."""
    verbose: int = 1
    save_freq: Literal["epoch"] | int = "epoch"
    use_keras_model: bool = True
    each_epoch_in_separate_process: bool = False

    @field_validator("strategy", mode="before")
    @classmethod
    def _supported_strategy(cls, value: Any) -> Any:
        if value in ("tpu", "horovod"):
            raise ValueError(
                f"strategy {value!r} is not supported by this service; use null (one device) or 'gpus' "
                "(all visible GPUs)"
            )
        return value

    @field_validator("var_freeze_expr")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as err:
                raise ValueError(f"var_freeze_expr {value!r} is not a valid regular expression: {err}") from err
        return value


class NmsConfig(_Group):
    """Non-maximum suppression (automl's nms_configs)."""

    method: Literal["hard", "gaussian"] = "gaussian"
    iou_thresh: float | None = Field(None, gt=0, le=1)
    score_thresh: float = 0.0
    sigma: float | None = Field(None, gt=0)
    pyfunc: bool = False
    max_nms_inputs: int = Field(0, ge=0)
    max_output_size: int = Field(100, ge=1)

    @property
    def resolved_iou_thresh(self) -> float:
        """IoU above which a box is dropped; gaussian soft-NMS only decays scores (automl: 1.0)."""
        if self.iou_thresh is not None:
            return self.iou_thresh
        return 0.5 if self.method == "hard" else 1.0

    @property
    def resolved_max_inputs(self) -> int:
        """Candidates kept per image before NMS: max_nms_inputs, or automl's 5000 when it is 0."""
        return self.max_nms_inputs or 5000

    @property
    def resolved_sigma(self) -> float:
        """Gaussian soft-NMS sigma; 0 means hard NMS."""
        if self.method == "hard":
            return 0.0
        return self.sigma if self.sigma is not None else 0.5


class EvalConfig(_Group):
    """Post-processing used by evaluation, export and prediction."""

    nms_configs: NmsConfig = Field(default_factory=NmsConfig)
    tflite_max_detections: int = Field(100, ge=1)


_GROUPS: dict[str, type[_Group]] = {
    "model": ModelConfig,
    "input": InputConfig,
    "loss": LossConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
}
FLAT_KEYS: dict[str, str] = {key: group for group, cls in _GROUPS.items() for key in cls.model_fields}
"""automl's flat hyperparameter name -> the group that holds it."""


@dataclass(frozen=True)
class NoEffect:
    """Why an accepted automl key changes nothing here, and which values ask for nothing (not worth a warning)."""

    reason: str
    inert: tuple[Any, ...] = ()
    """Values that ask for nothing beyond what happens here anyway (a null sample_image, skip_mismatch true)."""


_NOT_SAVED = "automl run bookkeeping that a saved config.yaml carries"
NO_EFFECT: dict[str, NoEffect] = {
    # Keys automl writes into a saved config.yaml (run bookkeeping, removed features): accepted and dropped.
    "batch_size": NoEffect("the batch size is a run option: set the job's batch_size or `effdet train --batch-size`"),
    "eval_batch_size": NoEffect("evaluation batches use the run's batch_size"),
    "model_dir": NoEffect(f"{_NOT_SAVED}; the run folder is the job's (or `effdet train --run-dir`)"),
    "steps_per_epoch": NoEffect("steps per epoch are the training records divided by the batch size"),
    "eval_samples": NoEffect("evaluation reads every image of the val split"),
    "num_shards": NoEffect("TPU shards; training runs on one device or on all visible GPUs (strategy: gpus)"),
    "iterations_per_loop": NoEffect("TPU host-loop length; every step is a call here"),
    "val_json_file": NoEffect("the ground truth is the dataset's val_annotations.json"),
    "testdev_dir": NoEffect("there is no COCO test-dev submission here"),
    "training_file_pattern": NoEffect("the records come from the job's dataset (or `effdet train --train`)"),
    "validation_file_pattern": NoEffect("the val records come from the job's dataset (or `effdet train --val`)"),
    "mode": NoEffect("the command or the job decides what runs (train, eval, export)"),
    "profile": NoEffect("there is no TensorBoard profiler here", inert=(False,)),
    "use_augmix": NoEffect("AugMix was removed from automl and is not implemented here", inert=(False, None)),
    "augmix_params": NoEffect("AugMix was removed from automl and is not implemented here", inert=(None,)),
    "resnet_depth": NoEffect("ResNet backbones were removed from automl; the backbone is backbone_name"),
    # Fields of the config tree that nothing reads.
    "sample_image": NoEffect("no TensorBoard image summaries are written here", inert=(None,)),
    "img_summary_steps": NoEffect("no TensorBoard image summaries are written here", inert=(None,)),
    "map_freq": NoEffect("evaluation during training runs every eval_every steps (a job option, `--eval-every`)"),
    "verbose": NoEffect("Keras fit verbosity; progress goes to the job's progress and the run's train log"),
    "save_freq": NoEffect("checkpoints are written every checkpoint_every steps (a job option, `--checkpoint-every`)"),
    "regenerate_source_id": NoEffect(
        "records written by the converter carry unique source ids already", inert=(False,)
    ),
    "dataset_type": NoEffect("selects Google-internal SSTable input; records here are TFRecords", inert=(None,)),
    "drop_remainder": NoEffect(
        "training always drops the last partial batch and evaluation always keeps it (automl's defaults)",
        inert=(True,),
    ),
    "ckpt_var_scope": NoEffect("pretrained weights are matched by variable path, whatever their scope", inert=(None,)),
    "skip_mismatch": NoEffect(
        "pretrained weights whose shape differs (the class head for another num_classes) are always skipped and logged",
        inert=(True,),
    ),
    "grad_checkpoint": NoEffect(
        "activations are not recomputed to save memory (results are the same); lower batch_size or image_size",
        inert=(False,),
    ),
    "use_keras_model": NoEffect("the model is always the Keras one", inert=(True,)),
    "each_epoch_in_separate_process": NoEffect("training runs in one process and resumes exactly", inert=(False,)),
    "nms_configs.pyfunc": NoEffect(
        "NMS always runs as TensorFlow ops; pyfunc only chose automl's numpy implementation", inert=(False,)
    ),
}
"""Every automl key that is accepted but changes nothing here, with the reason: the one list behind
`ineffective_keys` and the keys a saved automl config may carry beyond the config tree."""

RUN_OPTION_KEYS: frozenset[str] = frozenset({"batch_size"})
"""automl keys that are run options here (the job's fields, the CLI's flags), not hyperparameters: a service
answers 422 for them in hparams and points to its own field (`run_option_keys`)."""

IGNORED_KEYS: frozenset[str] = frozenset(key for key in NO_EFFECT if "." not in key and key not in FLAT_KEYS)
"""Keys that automl writes into a saved config.yaml and that are not fields here: accepted and dropped, so that
such a file loads unchanged."""


def _given_keys(overrides: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(flat key, value) of parsed overrides, nms_configs entries as 'nms_configs.<key>'."""
    given: list[tuple[str, Any]] = []
    for key, value in overrides.items():
        if key == "nms_configs" and isinstance(value, Mapping):
            given += [(f"nms_configs.{inner}", v) for inner, v in value.items()]
        else:
            given.append((str(key), value))
    return given


def ineffective_keys(overrides: Mapping[str, Any]) -> list[str]:
    """One line per key in `overrides` (as `parse_overrides` returns them) that is accepted but changes nothing
    here, in the order given; a value that asks for nothing (e.g. sample_image: null) is not reported."""
    lines = []
    for key, value in _given_keys(overrides):
        entry = NO_EFFECT.get(key)
        if entry is not None and not any(value == inert for inert in entry.inert):
            lines.append(f"`{key}` is accepted but has no effect here: {entry.reason}")
    return lines


def run_option_keys(overrides: Mapping[str, Any]) -> list[str]:
    """The keys of `overrides` that are run options here (RUN_OPTION_KEYS, e.g. batch_size), in the order given."""
    return [key for key in overrides if key in RUN_OPTION_KEYS]


class Config(BaseModel):
    """A complete, validated EfficientDet configuration."""

    model_config = ConfigDict(extra="forbid")

    model: ModelConfig = Field(default_factory=ModelConfig)
    input: InputConfig = Field(default_factory=InputConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    def to_flat(self) -> dict[str, Any]:
        """automl's flat dict (image_size as int or 'WxH'), the form stored with a job."""
        flat: dict[str, Any] = {}
        for group in _GROUPS:
            flat.update(getattr(self, group).model_dump(mode="json"))
        return flat

    def to_yaml(self) -> str:
        """The whole resolved config as a YAML document that `from_yaml` reads back identically."""
        return yaml.safe_dump(self.to_flat(), sort_keys=True)

    def override(self, overrides: Mapping[str, Any] | str | None) -> Config:
        """A new config with automl-style overrides applied (dict, 'a=b,c.d=e' string or YAML text)."""
        updates = parse_overrides(overrides)
        return _validate(_merge(self.to_flat(), updates), _unknown_key_problems(updates))

    @classmethod
    def from_yaml(cls, source: str | Path) -> Config:
        """Read a YAML document (text or file path) holding at least `name`, as written by `to_yaml`."""
        updates = load_yaml(source)
        name = updates.get("name")
        if not isinstance(name, str):
            raise ConfigError(["the YAML has no 'name' (the model variant, e.g. efficientdet-d0)"])
        return get_config(name, updates)


def _preset(
    backbone: str,
    image_size: int,
    fpn_num_filters: int,
    fpn_cell_repeats: int,
    box_class_repeats: int,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "backbone_name": backbone,
        "image_size": image_size,
        "fpn_num_filters": fpn_num_filters,
        "fpn_cell_repeats": fpn_cell_repeats,
        "box_class_repeats": box_class_repeats,
        **extra,
    }


# Compound scaling (paper table 1): backbone, input size, BiFPN width/depth, head depth.
PRESETS: dict[str, dict[str, Any]] = {
    "efficientdet-d0": _preset("efficientnet-b0", 512, 64, 3, 3),
    "efficientdet-d1": _preset("efficientnet-b1", 640, 88, 4, 3),
    "efficientdet-d2": _preset("efficientnet-b2", 768, 112, 5, 3),
    "efficientdet-d3": _preset("efficientnet-b3", 896, 160, 6, 4),
    "efficientdet-d4": _preset("efficientnet-b4", 1024, 224, 7, 4),
    "efficientdet-d5": _preset("efficientnet-b5", 1280, 288, 7, 4),
    "efficientdet-d6": _preset("efficientnet-b6", 1280, 384, 8, 5, fpn_weight_method="sum"),
    "efficientdet-d7": _preset("efficientnet-b6", 1536, 384, 8, 5, anchor_scale=5.0, fpn_weight_method="sum"),
    "efficientdet-d7x": _preset("efficientnet-b7", 1536, 384, 8, 5, max_level=8, fpn_weight_method="sum"),
}

# EfficientDet-Lite (automl's efficientdet_lite_param_dict): EfficientNet-Lite backbones, ReLU6 (easier to
# quantise), plain sum fusion in the BiFPN, and inputs scaled to about [-1, 1] as the Lite backbones were
# trained. lite3 and lite4 keep the default anchor_scale 4.0.
_LITE_COMMON: dict[str, Any] = {
    "act_type": "relu6",
    "fpn_weight_method": "sum",
    "mean_rgb": 127.0,
    "stddev_rgb": 128.0,
}
PRESETS.update(
    {
        "efficientdet-lite0": _preset("efficientnet-lite0", 320, 64, 3, 3, anchor_scale=3.0, **_LITE_COMMON),
        "efficientdet-lite1": _preset("efficientnet-lite1", 384, 88, 4, 3, anchor_scale=3.0, **_LITE_COMMON),
        "efficientdet-lite2": _preset("efficientnet-lite2", 448, 112, 5, 3, anchor_scale=3.0, **_LITE_COMMON),
        "efficientdet-lite3": _preset("efficientnet-lite3", 512, 160, 6, 4, **_LITE_COMMON),
        "efficientdet-lite4": _preset("efficientnet-lite4", 640, 224, 7, 4, **_LITE_COMMON),
    }
)
MODEL_NAMES: tuple[str, ...] = tuple(PRESETS)
BACKBONES: tuple[str, ...] = tuple(f"efficientnet-b{i}" for i in range(8)) + tuple(
    f"efficientnet-lite{i}" for i in range(5)
)


def get_config(model_name: str, overrides: Mapping[str, Any] | str | None = None) -> Config:
    """The preset for `model_name` with `overrides` applied; unknown names list the valid ones."""
    if model_name not in PRESETS:
        hint = difflib.get_close_matches(model_name, MODEL_NAMES, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError([f"unknown model {model_name!r}{suggestion}; choose one of {', '.join(MODEL_NAMES)}"])
    base = Config().to_flat()
    base.update(PRESETS[model_name], name=model_name)
    updates = parse_overrides(overrides)
    if updates.get("name", model_name) != model_name:
        raise ConfigError(
            [f"name {updates['name']!r} differs from the model {model_name!r}; drop it or make them equal"]
        )
    return _validate(_merge(base, updates), _unknown_key_problems(updates))


def parse_overrides(overrides: Mapping[str, Any] | str | None, allow_path: bool = True) -> dict[str, Any]:
    """Turn a dict, an automl 'a=b,c.d=e' string, a YAML text or (allow_path: a local CLI) a .yaml path into a
    nested dict; a server passes allow_path=False so that a request cannot make it read its own files."""
    if overrides is None:
        return {}
    if isinstance(overrides, Mapping):
        return dict(overrides)
    text = overrides.strip()
    if not text:
        return {}
    if text.endswith((".yaml", ".yml")) and "\n" not in text:
        if not allow_path:
            raise ConfigError([f"{text!r} looks like a file name: send the YAML text itself, not a path"])
        return load_yaml(Path(text))
    if "=" in text and "\n" not in text and ": " not in text:
        return parse_override_string(text)
    return load_yaml(text)


def parse_override_string(text: str) -> dict[str, Any]:
    """Parse automl's 'x.y=1,z=a*b' syntax into {'x': {'y': 1}, 'z': ['a', 'b']}."""
    result: dict[str, Any] = {}
    for pair in text.split(","):
        if not pair.strip():
            continue
        if pair.count("=") != 1:
            raise ConfigError([f"override {pair!r} is not of the form name=value"])
        key, raw = (part.strip() for part in pair.split("="))
        value: Any = [_literal(v) for v in raw.split("*")] if "*" in raw else _literal(raw)
        node = result
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return result


def _literal(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    if text in ("null", "none"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def load_yaml(source: str | Path) -> dict[str, Any]:
    """Read automl-format YAML from a path or from text; the top level must be a mapping."""
    text = Path(source).read_text() if isinstance(source, Path) else source
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError([f"hyperparameters are not valid YAML: {err}"]) from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"hyperparameter YAML must be a mapping of name: value, not {type(data).__name__}"])
    return data


def _unknown_key_problems(updates: Mapping[str, Any]) -> list[str]:
    problems = []
    for key in updates:
        if key in FLAT_KEYS or key in IGNORED_KEYS:
            continue
        hint = difflib.get_close_matches(str(key), list(FLAT_KEYS), n=1, cutoff=0.7)
        problems.append(f"unknown hyperparameter {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    nms = updates.get("nms_configs")
    if isinstance(nms, Mapping):
        for key in nms:
            if key not in NmsConfig.model_fields:
                problems.append(
                    f"unknown hyperparameter 'nms_configs.{key}'; valid: {', '.join(NmsConfig.model_fields)}"
                )
    return problems


def _merge(base: dict[str, Any], updates: Mapping[str, Any]) -> dict[str, Any]:
    """automl's update: known keys replace, nested dicts (nms_configs) merge key by key."""
    merged = dict(base)
    for key, value in updates.items():
        if key not in FLAT_KEYS:
            continue
        if isinstance(merged.get(key), dict) and isinstance(value, Mapping) and key != "label_map":
            merged[key] = {**merged[key], **{k: v for k, v in value.items() if k in merged[key]}}
        else:
            merged[key] = value
    return merged


def _validate(flat: dict[str, Any], problems: list[str]) -> Config:
    grouped: dict[str, dict[str, Any]] = {group: {} for group in _GROUPS}
    for key, value in flat.items():
        grouped[FLAT_KEYS[key]][key] = value
    problems = problems + _cross_check(flat)
    try:
        config = Config.model_validate(grouped)
    except ValidationError as err:
        raise ConfigError(problems + [_describe(e) for e in err.errors() if not _is_auto_branch(e)]) from None
    if problems:
        raise ConfigError(problems)
    return config


def _is_auto_branch(error: Any) -> bool:
    """The "should be 'auto'" half of a value that is neither a valid number (or list) nor 'auto': the other
    half says what is wrong with it."""
    return bool(error["type"] == "literal_error" and error["loc"][-1] == f"literal[{AUTO!r}]")


def _describe(error: Any) -> str:
    # a union's branch tags (e.g. 'constrained-float', 'list[float]') are not part of the name
    name = ".".join(str(p) for p in error["loc"][1:] if not any(c in str(p) for c in "[-"))
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "literal_error":
        return f"{name}: {message}, got {error['input']!r}"
    return f"{name}: {message} (got {error['input']!r})"


def valid_image_sizes(size: int, multiple: int) -> list[int]:
    """The multiples of `multiple` nearest to `size` (at most one below and one above)."""
    below = (size // multiple) * multiple
    return [s for s in (below, below + multiple) if s > 0]


def _cross_check(flat: dict[str, Any]) -> list[str]:
    """Checks that span fields, on the raw values (a check whose inputs are themselves invalid is skipped,
    their own error says why); each problem says what value would work."""
    problems: list[str] = []
    for check in (
        _check_levels,
        _check_image_size,
        _check_heads,
        _check_jitter,
        _check_label_map,
        _check_backbone,
        _check_lr_drops,
        _check_freeze_steps,
    ):
        try:
            problem = check(flat)
        except (TypeError, ValueError, KeyError, AttributeError):
            continue
        if problem:
            problems.append(problem)
    return problems


def _check_levels(flat: dict[str, Any]) -> str | None:
    if int(flat["min_level"]) >= int(flat["max_level"]):
        return f"min_level {flat['min_level']} must be below max_level {flat['max_level']}"
    return None


def _level_fit(flat: dict[str, Any]) -> tuple[int, int, int]:
    """(height, width, 2**max_level): the image size and the multiple that makes every level halve exactly."""
    height, width = parse_image_size(flat["image_size"])
    return height, width, 2 ** int(flat["max_level"])


def _check_image_size(flat: dict[str, Any]) -> str | None:
    height, width, multiple = _level_fit(flat)
    if not (height % multiple or width % multiple):
        return None
    # The backbone's strides (up to 2**5) must divide the size; the pooled levels above round up as in
    # automl, which is how EfficientDet-Lite0 runs at 320 with max_level 7.
    backbone_multiple = 2 ** min(int(flat["max_level"]), 5)
    if not (height % backbone_multiple or width % backbone_multiple):
        return None
    fixed_h, fixed_w = (valid_image_sizes(s, multiple) for s in (height, width))
    if height == width:
        choices = " or ".join(str(s) for s in fixed_h)
    else:
        choices = " or ".join(f"'{w}x{h}'" for h in fixed_h for w in fixed_w)
    return (
        f"image_size {format_image_size((height, width))} is not divisible by 2**max_level={multiple} (nor by "
        f"the backbone stride {backbone_multiple}), so the feature levels do not line up; use {choices}"
    )


def _check_heads(flat: dict[str, Any]) -> str | None:
    heads = list(flat["heads"])
    if not heads or len(set(heads)) != len(heads):
        return f"heads must name object_detection, segmentation or both, once each (got {heads!r})"
    if "segmentation" not in heads:
        return None
    moving = [key for key in ("tiles", "autoaugment_policy") if flat.get(key)]
    if moving:
        return (
            f"the segmentation head does not train with {' or '.join(moving)} yet (they move boxes, not masks); "
            "leave them unset"
        )
    # The segmentation head doubles the coarsest level back up and concatenates it with the next finer one, so
    # the levels must halve exactly: no rounded-up pooled level as EfficientDet-Lite0 at 320 has.
    height, width, multiple = _level_fit(flat)
    if not (height % multiple or width % multiple):
        return None
    choices = " or ".join(str(s) for s in valid_image_sizes(max(height, width), multiple))
    return (
        f"the segmentation head needs image_size divisible by 2**max_level={multiple}, got "
        f"{format_image_size((height, width))}; use {choices}"
    )


def _check_jitter(flat: dict[str, Any]) -> str | None:
    if float(flat["jitter_min"]) > float(flat["jitter_max"]):
        return f"jitter_min {flat['jitter_min']} is above jitter_max {flat['jitter_max']}"
    return None


def _check_label_map(flat: dict[str, Any]) -> str | None:
    label_map, num_classes = flat["label_map"], int(flat["num_classes"])
    if not isinstance(label_map, dict):
        return None
    bad = sorted(int(i) for i in label_map if not 1 <= int(i) <= num_classes)
    if bad:
        return (
            f"label_map ids {bad} are outside 1..num_classes={num_classes}; ids are 1-based and num_classes "
            "counts the classes (background not included)"
        )
    return None


def _check_backbone(flat: dict[str, Any]) -> str | None:
    name = str(flat["backbone_name"])
    if name not in BACKBONES:
        return f"backbone_name {name!r} is not one of {', '.join(BACKBONES)}"
    return None


def _check_lr_drops(flat: dict[str, Any]) -> str | None:
    if float(flat["first_lr_drop_epoch"]) > float(flat["second_lr_drop_epoch"]):
        return "first_lr_drop_epoch must not be after second_lr_drop_epoch"
    return None


def _check_freeze_steps(flat: dict[str, Any]) -> str | None:
    if flat.get("var_freeze_steps") is not None and not flat.get("var_freeze_expr"):
        return "var_freeze_steps limits var_freeze_expr to the first steps: give var_freeze_expr too, or leave it out"
    return None
