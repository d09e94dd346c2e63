"""var_freeze_expr is checked against the model's real variable paths (predicted without TensorFlow), per variant."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.schemas import JobCreate
from app.submission import SubmissionError, resolve_job
from core.settings import Settings
from core.tables import Dataset, DatasetStatus
from tests.helpers.reports import one_class_report


def _ready_dataset() -> Dataset:
    """A ready dataset row (never stored) with a one-class report."""
    report = one_class_report()
    return Dataset(id="d1", name="raccoons", status=DatasetStatus.ready, report=report.model_dump(mode="json"))


def _resolve(model: str, var_freeze_expr: str, tmp_path: Path) -> dict[str, object]:
    body = JobCreate(dataset_id="d1", model=model, var_freeze_expr=var_freeze_expr, num_steps=5)
    return resolve_job(body, _ready_dataset(), Settings(data_dir=tmp_path)).config


def test_lite4_freeze_expr_aimed_at_its_last_block_is_accepted(tmp_path: Path) -> None:
    config = _resolve("efficientdet-lite4", "efficientnet-lite4/blocks_29/", tmp_path)
    assert config["var_freeze_expr"] == "efficientnet-lite4/blocks_29/"


def test_lite4_freeze_expr_aimed_at_squeeze_excite_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SubmissionError) as err:
        _resolve("efficientdet-lite4", "efficientnet-lite4/blocks_0/se/", tmp_path)
    [problem] = err.value.problems  # the router answers these with a 422
    assert problem["loc"] == ["body", "var_freeze_expr"]
    assert "matches no variable of efficientdet-lite4" in problem["msg"]


def test_freeze_expr_aimed_at_fusion_weights_is_refused_where_fusion_is_a_plain_sum(tmp_path: Path) -> None:
    assert _resolve("efficientdet-d0", "fpn_cells/cell_0/fnode0/WSM", tmp_path)
    with pytest.raises(SubmissionError):
        _resolve("efficientdet-lite0", "fpn_cells/cell_0/fnode0/WSM", tmp_path)


def test_freeze_expr_matching_only_batch_norm_statistics_is_refused(tmp_path: Path) -> None:
    # Training freezes among trainable variables only; moving averages are never trained.
    with pytest.raises(SubmissionError):
        _resolve("efficientdet-d0", ".*moving_(mean|variance)$", tmp_path)
