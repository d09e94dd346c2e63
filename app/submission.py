"""Job submission checks: everything a job needs is validated before it is queued, and every problem is
reported at once (FastAPI's 422 shape: a list of {loc, msg, type}).

`var_freeze_expr` is checked without TensorFlow: it must compile and `re.match` at least one of the model's
trainable variable paths (`efficientnet-b0/...`, `resample_p6/...`, `fpn_cells/cell_0/...`, `class_net/...`,
`box_net/...`), which `effdet.model.structure.variable_paths` predicts exactly from the config, so a job is
accepted here exactly when training would freeze something.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from app.pretrained import find_checkpoint, list_checkpoints, misfit
from app.schemas import JobCreate
from core.settings import Settings
from core.tables import Dataset, DatasetStatus
from effdet.config import (
    MODEL_NAMES,
    Config,
    ConfigError,
    get_config,
    ineffective_keys,
    parse_overrides,
    run_option_keys,
)
from effdet.data.convert import ConversionReport
from effdet.formats import SAVED_MODEL, ExportFormat, default_formats, saved_model_only
from effdet.model.structure import variable_paths
from effdet.workflow import resolve_config, size_warnings

FALLBACK_MODEL = "efficientdet-d0"


class SubmissionError(Exception):
    """Every problem with a job submission, each as {loc, msg, type}."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(problems)} problems")
        self.problems = problems


@dataclass(frozen=True)
class ResolvedJob:
    """What is stored with an accepted job: the resolved automl config (flat) and the options, i.e. effdet
    TrainOptions fields (`pretrained` as a name in DATA_DIR/checkpoints) plus `min_score_thresh` for the export
    when the user gave one. `warnings`: advice that does not stop the job (hparams that change nothing here,
    objects too small for the input size)."""

    config: dict[str, Any]
    options: dict[str, Any]
    warnings: list[str]


def _problem(field: str, message: str) -> dict[str, Any]:
    return {"loc": ["body", field], "msg": message, "type": "value_error"}


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
    paths = variable_paths(_with_preset_anchors(config), trainable_only=True)
    if any(pattern.match(path) for path in paths):
        return None
    examples = ", ".join(paths[i] for i in (0, -1))
    return (
        f"var_freeze_expr {expr!r} matches no variable of {config.model.name} (matched with re.match from the "
        f"start of paths such as {examples}); try '(efficientnet|fpn_cells|resample_p6)'"
    )


def _with_preset_anchors(config: Config) -> Config:
    """The config with 'auto' anchors (chosen by the worker on the training boxes) replaced by the preset's: the
    number of anchors changes variable shapes, never their paths."""
    if not config.model.has_auto_anchors:
        return config
    preset = get_config(config.model.name).model
    return config.override({"aspect_ratios": preset.ratios, "anchor_scale": preset.scale})


def _pretrained_problem(name: str, settings: Settings) -> str:
    entries = list_checkpoints(settings)
    named = next((entry for entry in entries if entry.name == name), None)
    if named is not None:
        return f"pretrained checkpoint {name!r} ({named.format}) cannot be used: {named.note}"
    available = [entry.name for entry in entries if entry.usable]
    listing = ", ".join(available) if available else "none; the operator puts them in DATA_DIR/checkpoints"
    return f"pretrained checkpoint {name!r} not found; available: {listing}"


def _val_images(report: ConversionReport) -> int:
    val = report.splits.get("val")
    return val.images if val is not None else 0


def resolve_job(body: JobCreate, dataset: Dataset | None, settings: Settings) -> ResolvedJob:
    """The config and options of a valid submission; SubmissionError listing every problem otherwise."""
    problems: list[dict[str, Any]] = []
    dataset_problem = _dataset_problem(body, dataset)
    if dataset_problem:
        problems.append(_problem("dataset_id", dataset_problem))
    model = body.model
    if model not in MODEL_NAMES:
        problems.append(_problem("model", f"unknown model {model!r}; choose one of {', '.join(MODEL_NAMES)}"))
        model = FALLBACK_MODEL
    given = _given_hparams(body, problems)
    hparams_field = "hparams_yaml" if body.hparams_yaml is not None else "hparams"
    for key in run_option_keys(given):
        message = f"{key} is a run option here, not a hyperparameter: give it as the job's {key} field"
        problems.append(_problem(hparams_field, message))
    expr = given.get("var_freeze_expr")
    freeze_problem = _freeze_problem(expr, get_config(model)) if isinstance(expr, str) else None
    if freeze_problem and "not a valid regular expression" in freeze_problem:
        given.pop("var_freeze_expr")
    report = None
    if dataset is not None and not dataset_problem and dataset.report:
        try:
            report = ConversionReport.model_validate(dataset.report)
        except ValidationError:
            problems.append(_problem("dataset_id", f"dataset {dataset.id!r} has an unreadable report; upload again"))
    config: Config | None = None
    try:
        config = resolve_config(model, report, given)
    except ConfigError as err:
        problems += [_problem(hparams_field, p) for p in err.problems]
    if isinstance(expr, str) and config is not None and not freeze_problem:
        freeze_problem = _freeze_problem(expr, config)
    if freeze_problem:
        problems.append(_problem("var_freeze_expr", freeze_problem))
    if body.num_steps is not None and body.num_epochs is not None:
        problems.append(_problem("num_steps", "give num_steps or num_epochs, not both"))
    if body.eval_every is not None and report is not None and _val_images(report) == 0:
        message = "eval_every keeps the best weights by val AP, but the dataset has no val split; upload it again "
        problems.append(_problem("eval_every", message + "with val_fraction > 0 or leave eval_every out"))
    pretrained = find_checkpoint(settings, body.pretrained) if body.pretrained else None
    if body.pretrained and pretrained is None:
        problems.append(_problem("pretrained", _pretrained_problem(body.pretrained, settings)))
    elif pretrained is not None and config is not None:
        wrong = misfit(pretrained, _with_preset_anchors(config).model)
        if wrong:
            problems.append(_problem("pretrained", wrong))
    formats_problem = _formats_problem(body.export_formats, config)
    if formats_problem:
        problems.append(_problem("export_formats", formats_problem))
    if problems or config is None:
        raise SubmissionError(problems)
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
    options["export_formats"] = list(body.export_formats or default_formats(config))
    for name in ("eval_every", "checkpoint_every", "seed"):
        if getattr(body, name) is not None:
            options[name] = getattr(body, name)
    warnings = ineffective_keys(given) + size_warnings(report, config)
    return ResolvedJob(config=config.to_flat(), options=options, warnings=warnings)


def _formats_problem(formats: list[ExportFormat] | None, config: Config | None) -> str | None:
    """What is wrong with a job's export_formats, or None."""
    if formats is None:
        return None
    repeated = sorted({name for name in formats if formats.count(name) > 1})
    if repeated:
        return f"export_formats names {', '.join(repeated)} more than once; name each format once"
    if SAVED_MODEL not in formats:
        return (
            "export_formats must include saved_model: it is the reference the other formats are scored against "
            'and the runtime that serves any threshold, e.g. ["saved_model", "tflite_int8"]'
        )
    lite = [name for name in formats if name != SAVED_MODEL]
    only = saved_model_only(config) if lite and config is not None else None
    return f"{only}; leave out {', '.join(lite)}" if only else None
