"""Job submission checks: everything a job needs is validated before it is queued, and every problem is
reported at once (FastAPI's 422 shape: a list of {loc, msg, type}).

`var_freeze_expr` is checked without TensorFlow: it must compile and `re.match` at least one of a representative
list of the model's variable paths, generated from the config with the official scopes (`efficientnet-b0/...`,
`resample_p6/...`, `fpn_cells/cell_0/...`, `class_net/...`, `box_net/...`). The list names every scope and one
typical variable per layer kind, so a regex aimed at a scope, a layer or a variable kind is recognised.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from app.pretrained import find_checkpoint, list_checkpoints
from app.schemas import JobCreate
from core.settings import Settings
from core.tables import Dataset, DatasetStatus
from effdet.config import MODEL_NAMES, Config, ConfigError, get_config, parse_overrides
from effdet.data.convert import ConversionReport
from effdet.data.defaults import dataset_hparams

BLOCK_REPEATS = (1, 2, 2, 3, 3, 4, 1)
"""EfficientNet-B0's blocks per stage; bigger backbones scale them by their depth coefficient."""
DEPTH_COEFFICIENTS = {f"efficientnet-b{i}": d for i, d in enumerate((1.0, 1.1, 1.2, 1.4, 1.8, 2.2, 2.6, 3.1))}
BACKBONE_TOP_LEVEL = 5
FALLBACK_MODEL = "efficientdet-d0"


class JobSpecError(Exception):
    """Every problem with a job submission, each as {loc, msg, type}."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(problems)} problems")
        self.problems = problems


@dataclass(frozen=True)
class ResolvedJob:
    """What is stored with an accepted job: the resolved automl config (flat) and the options, i.e. effdet
    TrainOptions fields (`pretrained` as a name in DATA_DIR/checkpoints) plus `min_score_thresh` for the export
    when the user gave one."""

    config: dict[str, Any]
    options: dict[str, Any]


def _problem(field: str, message: str) -> dict[str, Any]:
    return {"loc": ["body", field], "msg": message, "type": "value_error"}


def backbone_blocks(backbone: str) -> int:
    """Number of MBConv blocks of an EfficientNet backbone (compound depth scaling, rounded up per stage)."""
    depth = DEPTH_COEFFICIENTS.get(backbone, 1.0)
    return sum(math.ceil(depth * repeats) for repeats in BLOCK_REPEATS)


def variable_paths(config: Config) -> list[str]:
    """A representative list of the model's variable paths (Keras 3 `variable.path`), built without TF."""
    model = config.model
    backbone = model.backbone_name
    paths = [f"{backbone}/stem/conv2d/kernel", f"{backbone}/stem/tpu_batch_normalization/gamma"]
    for i in range(backbone_blocks(backbone)):
        block = f"{backbone}/blocks_{i}"
        paths += [
            f"{block}/conv2d/kernel",
            f"{block}/depthwise_conv2d/depthwise_kernel",
            f"{block}/tpu_batch_normalization/gamma",
            f"{block}/se/conv2d/kernel",
        ]
    if model.max_level > BACKBONE_TOP_LEVEL:  # only the first extra level changes width, so only it has weights
        paths += [f"resample_p{BACKBONE_TOP_LEVEL + 1}/conv2d/kernel", f"resample_p{BACKBONE_TOP_LEVEL + 1}/bn/gamma"]
    num_levels = model.max_level - model.min_level + 1
    for cell in range(model.fpn_cell_repeats):
        for node in range(2 * (num_levels - 1)):
            op = f"fpn_cells/cell_{cell}/fnode{node}/op_after_combine{num_levels + node}"
            paths += [f"fpn_cells/cell_{cell}/fnode{node}/WSM", f"{op}/conv/pointwise_kernel", f"{op}/bn/gamma"]
    for net, prefix in (("class_net", "class"), ("box_net", "box")):
        for i in range(model.box_class_repeats):
            paths += [f"{net}/{prefix}-{i}/depthwise_kernel", f"{net}/{prefix}-{i}/pointwise_kernel"]
            paths += [f"{net}/{prefix}-{i}/bias", f"{net}/{prefix}-{i}-bn-{model.min_level}/gamma"]
        paths += [f"{net}/{prefix}-predict/{kind}" for kind in ("depthwise_kernel", "pointwise_kernel", "bias")]
    return paths


def _dataset_problem(body: JobCreate, dataset: Dataset | None) -> str | None:
    if dataset is None:
        return f"dataset {body.dataset_id!r} not found; GET /v1/datasets lists yours"
    if dataset.status == DatasetStatus.validating:
        return f"dataset {dataset.id!r} is still being validated; submit the job when its status is 'ready'"
    if dataset.status != DatasetStatus.ready:
        return f"dataset {dataset.id!r} failed validation ({dataset.error}); fix it and upload it again"
    if not dataset.report:
        return f"dataset {dataset.id!r} has no conversion report; upload it again"
    return None


def _given_hparams(body: JobCreate, problems: list[dict[str, Any]]) -> dict[str, Any]:
    """The user's overrides, from `hparams` or `hparams_yaml`, with `var_freeze_expr` folded in."""
    given: dict[str, Any] = {}
    if body.hparams is not None and body.hparams_yaml is not None:
        problems.append(_problem("hparams_yaml", "give hparams or hparams_yaml, not both"))
    if body.hparams is not None:
        given = dict(body.hparams)
    elif body.hparams_yaml is not None:
        try:
            given = parse_overrides(body.hparams_yaml, allow_path=False)
        except ConfigError as err:
            problems += [_problem("hparams_yaml", p) for p in err.problems]
    if body.var_freeze_expr is not None:
        if given.get("var_freeze_expr") not in (None, body.var_freeze_expr):
            problems.append(_problem("var_freeze_expr", "var_freeze_expr differs from the one in hparams; give one"))
        given["var_freeze_expr"] = body.var_freeze_expr
    return given


def _freeze_problem(expr: str, config: Config) -> str | None:
    try:
        pattern = re.compile(expr)
    except re.error as err:
        return f"var_freeze_expr {expr!r} is not a valid regular expression: {err}"
    paths = variable_paths(config)
    if any(pattern.match(path) for path in paths):
        return None
    examples = ", ".join(paths[i] for i in (0, -1))
    return (
        f"var_freeze_expr {expr!r} matches no variable of {config.model.name} (matched with re.match from the "
        f"start of paths such as {examples}); try '(efficientnet|fpn_cells|resample_p6)'"
    )


def _pretrained_problem(name: str, settings: Settings) -> str:
    available = [entry.name for entry in list_checkpoints(settings) if entry.usable]
    listing = ", ".join(available) if available else "none; the operator puts them in DATA_DIR/checkpoints"
    return f"pretrained checkpoint {name!r} not found; available: {listing}"


def resolve_job(body: JobCreate, dataset: Dataset | None, settings: Settings) -> ResolvedJob:
    """The config and options of a valid submission; JobSpecError listing every problem otherwise."""
    problems: list[dict[str, Any]] = []
    dataset_problem = _dataset_problem(body, dataset)
    if dataset_problem:
        problems.append(_problem("dataset_id", dataset_problem))
    model = body.model
    if model not in MODEL_NAMES:
        problems.append(_problem("model", f"unknown model {model!r}; choose one of {', '.join(MODEL_NAMES)}"))
        model = FALLBACK_MODEL
    given = _given_hparams(body, problems)
    expr = given.get("var_freeze_expr")
    freeze_problem = _freeze_problem(expr, get_config(model)) if isinstance(expr, str) else None
    if freeze_problem and "not a valid regular expression" in freeze_problem:
        given.pop("var_freeze_expr")
    implied = {}
    if dataset is not None and not dataset_problem and dataset.report:
        try:
            implied = dataset_hparams(ConversionReport.model_validate(dataset.report), given)
        except ValidationError:
            problems.append(_problem("dataset_id", f"dataset {dataset.id!r} has an unreadable report; upload again"))
    config: Config | None = None
    try:
        config = get_config(model, {**implied, **given})
    except ConfigError as err:
        field = "hparams_yaml" if body.hparams_yaml is not None else "hparams"
        problems += [_problem(field, p) for p in err.problems]
    if isinstance(expr, str) and config is not None and not freeze_problem:
        freeze_problem = _freeze_problem(expr, config)
    if freeze_problem:
        problems.append(_problem("var_freeze_expr", freeze_problem))
    if body.num_steps is not None and body.num_epochs is not None:
        problems.append(_problem("num_steps", "give num_steps or num_epochs, not both"))
    pretrained = find_checkpoint(settings, body.pretrained) if body.pretrained else None
    if body.pretrained and pretrained is None:
        problems.append(_problem("pretrained", _pretrained_problem(body.pretrained, settings)))
    if problems or config is None:
        raise JobSpecError(problems)
    options: dict[str, Any] = {
        "batch_size": body.batch_size,
        "num_steps": body.num_steps,
        "num_epochs": body.num_epochs,
        "max_train_seconds": body.max_train_seconds,
        "pretrained": body.pretrained,
        "progress_interval_s": settings.progress_interval_s,
    }
    if body.min_score_thresh is not None:
        options["min_score_thresh"] = body.min_score_thresh
    return ResolvedJob(config=config.to_flat(), options=options)
