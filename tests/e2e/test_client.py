"""The `effdet-client` command driving `effdet-service run` (embedded SQLite database and queue, a real Celery
worker) through the whole flow: upload 12 raccoon images with progress, wait for ready, submit a tiny job, watch it
to success, plot, predict with boxes drawn, download the model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.e2e.conftest import RACCOON, Runner, free_port

CLIENT = Path(sys.executable).with_name("effdet-client")
IMAGES = 12


def _client(url: str, runner: Runner, *args: object, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `effdet-client --url URL ARGS` as a user would; on an unexpected exit show its output and the runner's."""
    done = subprocess.run(
        [str(CLIENT), "--url", url, *map(str, args)], capture_output=True, text=True, timeout=480, check=False
    )
    if ok:
        assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}\nrunner:\n{runner.tail()}"
    return done


def _raccoons(folder: Path) -> Path:
    """The first IMAGES raccoon images with their VOC annotations."""
    for sub in ("images", "annotations"):
        (folder / sub).mkdir(parents=True)
    for index in range(1, IMAGES + 1):
        shutil.copy(RACCOON / "images" / f"raccoon-{index}.jpg", folder / "images")
        shutil.copy(RACCOON / "annotations" / f"raccoon-{index}.xml", folder / "annotations")
    return folder


@pytest.mark.slow
def test_client_uploads_trains_watches_plots_predicts_and_downloads(tmp_path: Path, start_runner: Any) -> None:
    runner = start_runner(
        {"EFFDET_DATA_DIR": str(tmp_path / "var"), "PORT": str(free_port()), "EFFDET_PROGRESS_INTERVAL_S": "0.2"}
    )
    url = runner.url()

    upload = _client(
        url, runner, "datasets", "upload", _raccoons(tmp_path / "raccoons"), "--val-fraction", 0.25, "--wait", "--json"
    )
    assert "uploading raccoons" in upload.stderr
    dataset = json.loads(upload.stdout)
    assert (dataset["status"], dataset["num_images"], dataset["label_map"]) == ("ready", IMAGES, {"1": "raccoon"})

    hparams = tmp_path / "hparams.yaml"
    hparams.write_text("image_size: 128\n")
    submit = ("jobs", "submit", "--dataset", dataset["id"], "--model", "efficientdet-d0", "--hparams", hparams)
    job = json.loads(_client(url, runner, *submit, "--num-steps", 4, "--batch-size", 2, "--json").stdout)
    watched = _client(url, runner, "jobs", "watch", job["id"])
    assert "succeeded" in watched.stdout
    assert "4/4" in watched.stderr  # the progress bar reached the last step
    job = json.loads(_client(url, runner, "jobs", "show", job["id"], "--json").stdout)
    assert (job["status"], job["progress"]["step"]) == ("succeeded", 4)

    plots = json.loads(_client(url, runner, "jobs", "plot", job["id"], "--output", tmp_path / "plots", "--json").stdout)
    assert sorted(plots["written"]) == ["learning_rate", "loss", "pr_curve"], plots
    for path in plots["written"].values():
        assert Image.open(path).format == "PNG"

    image = RACCOON / "images" / "raccoon-1.jpg"
    predict = ("models", "predict", job["model_id"], image, "--score-threshold", 0, "--max-detections", 5)
    [result] = json.loads(_client(url, runner, *predict, "--draw", tmp_path / "drawn", "--json").stdout)
    assert 0 < len(result["detections"]) <= 5
    assert {d["label"] for d in result["detections"]} == {"raccoon"}
    drawn = Image.open(result["drawn"])
    assert (drawn.format, drawn.size) == ("JPEG", Image.open(image).size)

    (tmp_path / "models").mkdir()
    download = json.loads(
        _client(url, runner, "models", "download", job["model_id"], "--output", tmp_path / "models", "--json").stdout
    )
    assert any(name.endswith("saved_model.pb") for name in zipfile.ZipFile(download["path"]).namelist())

    missing = _client(url, runner, "jobs", "watch", "no-such-job", ok=False)
    assert missing.returncode == 1
    assert "404" in missing.stderr
    runner.interrupt()
