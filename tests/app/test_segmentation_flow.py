"""A segmentation job from upload to predict through the API: synthetic plates with their masks (COCO polygons,
`effdet synth --masks`) uploaded as a zip, converted and trained by the worker's own tasks, the job's metrics with
the segmentation head's mIoU, predict answering each image's class map as COCO RLE beside the detections, as a PNG
of class ids and drawn over the image (through the API, effdet_client and the dashboard in chromium), and an
evaluation scoring the SavedModel's class maps; for a model with both heads and for one that only segments. What
cannot be honoured is a 422 that says what to do."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect, sync_playwright
from pycocotools import mask as coco_mask

from core.tables import DatasetStatus, JobStatus
from effdet.data.synthetic import write_dataset
from effdet_client import Client
from tests.helpers.browser import chromium, served
from worker.tasks import convert_dataset, run_evaluation, run_job

HPARAMS = {"image_size": 128, "fpn_cell_repeats": 1, "box_class_repeats": 1}
IMAGE_SIZE = (160, 120)


def _zipped(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder.parent).as_posix())
    return buffer.getvalue()


def _dashboard_shows_it(service: Any, job_id: str, model_id: str, image: Path, classes_found: int) -> None:
    """In chromium: the job page's IoU tables, the model page's, and the try-it box drawing the class map."""
    with served(service.client.app) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium()), args=["--headless", "--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{url}/#/jobs/{job_id}")
        expect(page.locator("#segmentation-metrics")).to_contain_text("mIoU")
        expect(page.locator("#job-metrics")).to_contain_text("plate")
        page.goto(f"{url}/#/models/{model_id}")
        expect(page.locator("#model-segmentation")).to_contain_text("pixel accuracy")
        page.locator("#tryit-file").set_input_files(image)
        expect(page.locator("#tryit-json")).to_contain_text('"segmentation"')
        expect(page.locator("#tryit-image")).to_have_attribute("data-masks", str(classes_found))
        expect(page.locator("#tryit-image image.mask")).to_have_count(1)
        browser.close()


def _predict(service: Any, model_id: str, images: list[bytes], **params: str) -> Any:
    files = [("file", (f"scene-{i}.jpg", data, "image/jpeg")) for i, data in enumerate(images)]
    return service.client.post(f"/v1/models/{model_id}/predict", files=files, params=params)


@pytest.mark.slow
@pytest.mark.parametrize("heads", [["object_detection", "segmentation"], ["segmentation"]])
def test_a_segmentation_job_runs_from_upload_to_predict(sqlite_service: Any, tmp_path: Path, heads: list[str]) -> None:
    service = sqlite_service
    raw = write_dataset(
        tmp_path / "plates", 16, "coco", seed=5, image_size=IMAGE_SIZE, plate_width=(60, 120), masks=True
    )
    upload = service.client.post(
        "/v1/datasets",
        files={"file": ("plates.zip", _zipped(raw), "application/zip")},
        data={"name": "plate masks", "val_fraction": "0.25"},
    )
    assert upload.status_code == 202, upload.text
    dataset_id = upload.json()["id"]
    convert_dataset(dataset_id)
    dataset = service.client.get(f"/v1/datasets/{dataset_id}").json()
    assert dataset["status"] == DatasetStatus.ready, dataset
    summary = dataset["segmentation"]
    assert summary["images"] == {"train": 12, "val": 4}
    assert list(summary["class_shares"]) == ["background", "plate"]

    hparams = {**HPARAMS, "heads": heads}
    body = {"dataset_id": dataset_id, "model": "efficientdet-d0", "hparams": hparams, "num_steps": 24, "batch_size": 4}
    refused = service.client.post("/v1/jobs", json={**body, "export_formats": ["saved_model", "tflite"]})
    assert refused.status_code == 422
    assert "segmentation model is served by its SavedModel only" in refused.text
    submitted = service.client.post("/v1/jobs", json=body)
    assert submitted.status_code == 202, submitted.text
    job = submitted.json()
    assert job["warnings"] == []
    assert (job["config"]["seg_num_classes"], job["options"]["export_formats"]) == (2, ["saved_model"])

    run_job(job["id"])
    job = service.client.get(f"/v1/jobs/{job['id']}").json()
    assert job["status"] == JobStatus.succeeded, job["error"]
    segmentation = job["metrics"]["segmentation"]
    assert segmentation["class_names"] == ["background", "plate"]
    assert segmentation["num_images"] == 4
    assert 0.0 <= segmentation["miou"] <= 1.0
    detects = "object_detection" in heads
    assert (job["metrics"]["ap"] is not None) == detects, "box metrics for a detection head only, never zeros"
    model_id = job["model_id"]
    assert service.client.get(f"/v1/models/{model_id}").json()["formats"] == ["saved_model"]

    scene = (raw / "images" / "synthetic-00000.jpg").read_bytes()
    answer = _predict(service, model_id, [scene], score_threshold="0.0")
    assert answer.status_code == 200, answer.text
    found = answer.json()
    width, height = IMAGE_SIZE
    assert found["size"] == [height, width]
    assert all(d["label"] == "plate" for d in found["detections"])
    assert detects or found["detections"] == []
    union = np.zeros((height, width), bool)
    for mask in found["segmentation"]:
        assert (mask["class_id"], mask["label"], mask["size"]) == (1, "plate", [height, width])
        pixels = coco_mask.decode({"counts": mask["counts"].encode(), "size": mask["size"]})
        assert int(pixels.sum()) == mask["area"] > 0
        union |= pixels.astype(bool)

    png = _predict(service, model_id, [scene], mask="png")
    assert png.headers["content-type"] == "image/png"
    class_map = np.asarray(Image.open(io.BytesIO(png.content)))
    assert class_map.shape == (height, width)
    assert np.array_equal(class_map == 1, union), "the PNG and the RLE are the same class map"

    drawn = _predict(service, model_id, [scene], annotated="true")
    assert drawn.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(drawn.content)).size == IMAGE_SIZE

    two = _predict(service, model_id, [scene, scene], mask="none")
    assert two.status_code == 200
    assert all(isinstance(detections, list) for detections in two.json()), "mask=none answers as a detector does"
    zipped = _predict(service, model_id, [scene, scene], mask="png")
    assert zipped.headers["content-type"] == "application/zip"
    assert sorted(zipfile.ZipFile(io.BytesIO(zipped.content)).namelist()) == ["scene-0.png", "scene-1.png"]

    client = Client(http=service.client)
    assert [d.label for d in client.predict(model_id, raw / "images" / "synthetic-00000.jpg")] == [
        d["label"] for d in _predict(service, model_id, [scene]).json()["detections"]
    ], "the client's predict answers a segmenter's detections"
    assert client.class_map(model_id, raw / "images" / "synthetic-00000.jpg") == png.content

    _dashboard_shows_it(
        service, job["id"], model_id, raw / "images" / "synthetic-00000.jpg", len(found["segmentation"])
    )

    both = _predict(service, model_id, [scene], mask="png", annotated="true")
    assert both.status_code == 422
    assert "ask for one of them" in both.json()["detail"]

    evaluation = service.client.post(f"/v1/models/{model_id}/evaluations", json={"split": "val"})
    if not detects:
        assert evaluation.status_code == 422
        assert "the model only segments" in evaluation.text
        return
    assert evaluation.status_code == 202, evaluation.text
    run_evaluation(evaluation.json()["id"])
    evaluated = service.client.get(f"/v1/evaluations/{evaluation.json()['id']}").json()
    assert evaluated["status"] == "succeeded", evaluated
    scored = evaluated["result"]["metrics"]["segmentation"]
    assert (scored["class_names"], scored["num_images"]) == (["background", "plate"], 4)
    assert abs(scored["miou"] - segmentation["miou"]) < 0.05, "the SavedModel's class maps score as the job's model"
