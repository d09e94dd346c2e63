"""A job's export_formats: the default, and each request the worker could not honour refused with a 422 reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from app.schemas import JobCreate
from app.submission import SubmissionError, resolve_job
from core.settings import Settings
from core.tables import Dataset, DatasetStatus
from tests.helpers.reports import one_class_report


def _resolve(tmp_path: Path, **fields: Any) -> dict[str, Any]:
    report = one_class_report().model_dump(mode="json")
    dataset = Dataset(id="d1", name="raccoons", status=DatasetStatus.ready, report=report)
    body = JobCreate(dataset_id="d1", model="efficientdet-lite0", num_steps=5, **fields)
    return resolve_job(body, dataset, Settings(data_dir=tmp_path)).options


def _refused(tmp_path: Path, **fields: Any) -> str:
    with pytest.raises(SubmissionError) as err:
        _resolve(tmp_path, **fields)
    [problem] = err.value.problems
    assert problem["loc"] == ["body", "export_formats"]
    return str(problem["msg"])


def test_a_job_exports_saved_model_and_tflite_by_default_and_a_tiled_one_the_saved_model_only(tmp_path: Path) -> None:
    assert _resolve(tmp_path)["export_formats"] == ["saved_model", "tflite"]
    assert _resolve(tmp_path, hparams={"tiles": 256})["export_formats"] == ["saved_model"]
    chosen = _resolve(tmp_path, export_formats=["saved_model", "tflite_float16"])
    assert chosen["export_formats"] == ["saved_model", "tflite_float16"]
    every = ["saved_model", "tflite", "tflite_float16", "tflite_int8"]
    assert _resolve(tmp_path, export_formats=every)["export_formats"] == every


def test_export_formats_that_cannot_be_honoured_are_refused_with_what_to_do(tmp_path: Path) -> None:
    assert "more than once" in _refused(tmp_path, export_formats=["saved_model", "tflite", "tflite"])
    assert "must include saved_model" in _refused(tmp_path, export_formats=["tflite"])
    assert "leave out tflite" in _refused(tmp_path, export_formats=["saved_model", "tflite"], hparams={"tiles": 256})
    with pytest.raises(ValidationError):
        JobCreate(dataset_id="d1", export_formats=["onnx"])  # type: ignore[list-item]
