"""Job submissions with `aspect_ratios: auto` / `anchor_scale: auto`: accepted as they are (the worker chooses
them on the training boxes), other strings refused with one problem each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from core.tables import Job

ROOT = Path(__file__).resolve().parents[2]


def test_auto_anchors_are_accepted_and_stored_as_auto(sqlite_service: Any) -> None:
    dataset = sqlite_service.dataset()
    body = {
        "dataset_id": dataset,
        "hparams_yaml": "aspect_ratios: auto\nanchor_scale: auto\n",
        "var_freeze_expr": "(efficientnet|fpn_cells|resample_p6)",
        "num_steps": 5,
    }
    response = sqlite_service.client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    config = sqlite_service.row(Job, response.json()["id"]).config
    assert (config["aspect_ratios"], config["anchor_scale"]) == ("auto", "auto")


def test_other_anchor_strings_are_refused(sqlite_service: Any) -> None:
    dataset = sqlite_service.dataset()
    body = {"dataset_id": dataset, "hparams": {"aspect_ratios": "wide", "anchor_scale": "big"}, "num_steps": 5}
    response = sqlite_service.client.post("/v1/jobs", json=body)
    assert response.status_code == 422, response.text
    messages = [problem["msg"] for problem in response.json()["detail"]]
    assert len(messages) == 2
    assert messages[0].startswith("aspect_ratios: aspect_ratios 'wide' is neither a list of ratios")
    assert messages[1].startswith("anchor_scale: anchor_scale 'big' is neither a number")
    assert sqlite_service.count(Job) == 0


def test_submission_resolves_auto_anchors_without_tensorflow() -> None:
    code = (
        "import sys\n"
        "from app.submission import _freeze_problem\n"
        "from effdet.workflow import resolve_config\n"
        "config = resolve_config('efficientdet-d0', None, 'aspect_ratios=auto,anchor_scale=auto')\n"
        "assert _freeze_problem('(efficientnet)', config) is None\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
