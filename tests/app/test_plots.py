"""GET /v1/jobs/{id}/plots/{name}.png: loss and learning-rate curves from progress events (or the run's
train.jsonl), precision-recall curves from the job's metrics, and 404/409 answers that say what is missing."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from PIL import Image

from core.layout import train_log
from core.tables import Job, JobStatus
from tests.app.conftest import Service

PNG_SIZE = (700, 400)
REPO = Path(__file__).resolve().parents[2]
VALID_NAMES = "loss.png, learning_rate.png, pr_curve.png"


def _progress(step: int, loss: float) -> dict[str, Any]:
    return {
        "step": step,
        "total_steps": 4,
        "loss": loss,
        "cls_loss": loss * 0.7,
        "box_loss": loss * 0.3,
        "learning_rate": 0.001 * step,
        "images_per_sec": 2.0,
        "eta_seconds": 4.0 - step,
    }


def _png(response: Any) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG"
    return image


def _set_metrics(service: Service, job_id: str, metrics: dict[str, Any]) -> None:
    with service.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.metrics = metrics
        session.commit()


def test_loss_and_learning_rate_plots_come_from_progress_events(service: Service) -> None:
    job_id = service.job(service.dataset(), JobStatus.training)
    for step, loss in ((1, 2.5), (2, 1.9), (3, 1.4)):
        service.event(job_id, "progress", **_progress(step, loss))
    loss_png = _png(service.client.get(f"/v1/jobs/{job_id}/plots/loss.png"))
    lr_png = _png(service.client.get(f"/v1/jobs/{job_id}/plots/learning_rate.png"))
    assert loss_png.size == lr_png.size == PNG_SIZE
    assert loss_png.tobytes() != lr_png.tobytes()


def test_loss_plot_reads_train_log_when_there_are_no_events(sqlite_service: Service) -> None:
    job_id = sqlite_service.job(sqlite_service.dataset(), JobStatus.training)
    log = train_log(sqlite_service.settings, job_id)
    log.parent.mkdir(parents=True)
    lines = [json.dumps(_progress(step, 3.0 / step)) for step in (1, 2, 3, 2, 3, 4)]  # resumed after step 3
    log.write_text("\n".join([*lines, '{"step": 5, "lo']) + "\n")  # the last line is cut short
    _png(sqlite_service.client.get(f"/v1/jobs/{job_id}/plots/loss.png"))


def test_pr_curve_plot_draws_each_class_from_metrics(sqlite_service: Service) -> None:
    job_id = sqlite_service.job(sqlite_service.dataset(), JobStatus.succeeded)
    curve = [[r / 10, 1.0 - r / 20] for r in range(11)]
    per_class = {
        "raccoon": {"ap": 0.4, "ap50": 0.7, "pr_curve": curve},
        "empty": {"ap": None, "ap50": None, "pr_curve": []},
    }
    _set_metrics(sqlite_service, job_id, {"ap": 0.4, "ap50": 0.7, "per_class": per_class})
    assert _png(sqlite_service.client.get(f"/v1/jobs/{job_id}/plots/pr_curve.png")).size == PNG_SIZE


def test_unknown_plot_name_is_404_listing_the_valid_names(sqlite_service: Service) -> None:
    job_id = sqlite_service.job(sqlite_service.dataset())
    for path in ("accuracy.png", "loss", "loss.svg"):
        response = sqlite_service.client.get(f"/v1/jobs/{job_id}/plots/{path}")
        assert response.status_code == 404, path
        assert VALID_NAMES in response.json()["detail"]
    assert sqlite_service.client.get("/v1/jobs/nope/plots/loss.png").status_code == 404


def test_missing_data_is_409_while_the_job_runs_and_404_once_it_ended(sqlite_service: Service) -> None:
    dataset_id = sqlite_service.dataset()
    queued = sqlite_service.job(dataset_id, JobStatus.queued)
    failed = sqlite_service.job(dataset_id, JobStatus.failed)
    for name in ("loss", "learning_rate", "pr_curve"):
        waiting = sqlite_service.client.get(f"/v1/jobs/{queued}/plots/{name}.png")
        assert waiting.status_code == 409, waiting.text
        assert "yet (queued)" in waiting.json()["detail"]
        ended = sqlite_service.client.get(f"/v1/jobs/{failed}/plots/{name}.png")
        assert ended.status_code == 404, ended.text
        assert "ended (failed) without" in ended.json()["detail"]
    assert not any((sqlite_service.data_dir / "runs").iterdir()), "a plot request writes nothing"


def test_importing_the_app_does_not_import_matplotlib() -> None:
    code = "import sys, app.main, app.routers.jobs; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, check=False, timeout=120).returncode == 0
