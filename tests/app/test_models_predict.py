"""Models and prediction on a real exported SavedModel (EfficientDet-D0 at 128 pixels, one class)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from core.tables import JobStatus

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_id(module_service: Any, exported: Path) -> str:
    job = module_service.job(module_service.dataset(), JobStatus.succeeded)
    return str(module_service.model(job, exported))


def _jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 90, 60)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_predict_boxes_are_in_the_image(module_service: Any, model_id: str) -> None:
    response = module_service.client.post(
        f"/v1/models/{model_id}/predict",
        files={"file": ("a.jpg", _jpeg(300, 200), "image/jpeg")},
        data={"score_threshold": "0", "max_detections": "10"},
    )
    assert response.status_code == 200, response.text
    detections = response.json()
    assert 0 < len(detections) <= 10
    for detection in detections:
        xmin, ymin, xmax, ymax = detection["box"]
        assert 0 <= xmin <= xmax <= 300
        assert 0 <= ymin <= ymax <= 200
        assert detection["label"] == "raccoon"
        assert detection["class_id"] == 1
        assert 0 <= detection["score"] <= 1


def test_predict_several_files_answers_a_list_per_file(module_service: Any, model_id: str) -> None:
    png = io.BytesIO()
    Image.new("RGB", (64, 96), (10, 200, 30)).save(png, format="PNG")
    response = module_service.client.post(
        f"/v1/models/{model_id}/predict",
        params={"score_threshold": 0, "max_detections": 3},
        files=[("file", ("a.jpg", _jpeg(300, 200), "image/jpeg")), ("file", ("b.png", png.getvalue(), "image/png"))],
    )
    assert response.status_code == 200, response.text
    per_file = response.json()
    assert len(per_file) == 2
    assert all(len(detections) == 3 for detections in per_file)
    assert all(d["box"][2] <= 64 and d["box"][3] <= 96 for d in per_file[1])


def test_predict_annotated_returns_jpeg(module_service: Any, model_id: str) -> None:
    response = module_service.client.post(
        f"/v1/models/{model_id}/predict?annotated=true&score_threshold=0&max_detections=5",
        files={"file": ("a.jpg", _jpeg(300, 200), "image/jpeg")},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(response.content)).size == (300, 200)


def test_predict_anonymised_keeps_each_image_and_several_come_zipped(module_service: Any, model_id: str) -> None:
    png = io.BytesIO()
    Image.new("RGB", (64, 96), (10, 200, 30)).save(png, format="PNG")
    url = f"/v1/models/{model_id}/predict?score_threshold=0&max_detections=3"
    one = module_service.client.post(f"{url}&annotated=pixelate", files={"file": ("b.png", png.getvalue())})
    assert one.status_code == 200, one.text
    assert one.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(one.content)).size == (64, 96)
    files = [("file", ("a.jpg", _jpeg(300, 200), "image/jpeg")), ("file", ("b.png", png.getvalue(), "image/png"))]
    several = module_service.client.post(f"{url}&annotated=blur", files=files)
    assert several.status_code == 200, several.text
    assert several.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(several.content))
    assert archive.namelist() == ["a.jpg", "b.png"]
    assert Image.open(archive.open("a.jpg")).size == (300, 200)
    unknown = module_service.client.post(f"{url}&annotated=smudge", files={"file": ("b.png", png.getvalue())})
    assert unknown.status_code == 422
    assert "'blur' or 'pixelate'" in str(unknown.json()["detail"])


def test_predict_rejects_non_images(module_service: Any, model_id: str) -> None:
    client = module_service.client
    text = client.post(f"/v1/models/{model_id}/predict", files={"file": ("a.txt", b"hello", "text/plain")})
    assert text.status_code == 422
    assert "not a readable image" in text.json()["detail"]
    truncated = client.post(f"/v1/models/{model_id}/predict", files={"file": ("b.jpg", _jpeg(300, 200)[:200])})
    assert truncated.status_code == 422
    assert client.post("/v1/models/nope/predict", files={"file": ("a.jpg", _jpeg(8, 8))}).status_code == 404


def test_predict_rejects_images_over_the_pixel_limit(module_service: Any, model_id: str) -> None:
    module_service.settings.max_image_pixels = 100 * 100
    try:
        response = module_service.client.post(
            f"/v1/models/{model_id}/predict", files={"file": ("a.jpg", _jpeg(200, 200))}
        )
    finally:
        module_service.settings.max_image_pixels = 4000 * 4000
    assert response.status_code == 413
    assert "EFFDET_MAX_IMAGE_PIXELS" in response.json()["detail"]


def test_models_list_show_and_download(module_service: Any, model_id: str) -> None:
    client = module_service.client
    assert [m["id"] for m in client.get("/v1/models").json()["items"]] == [model_id]
    shown = client.get(f"/v1/models/{model_id}").json()
    assert shown["formats"] == ["saved_model"]
    assert shown["label_map"] == {"1": "raccoon"}
    download = client.get(f"/v1/models/{model_id}/download")
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(download.content)).namelist()
    assert "efficientdet-d0-v1/saved_model.pb" in names
    assert "efficientdet-d0-v1/assets/label_map.json" in names
    assert client.get(f"/v1/models/{model_id}/download?format=tflite").status_code == 404


def _with_tflite(module_service: Any, exported: Path, folder: Path, network_only: bool) -> str:
    """The shared model with a float32 TFLite file beside its SavedModel and a manifest naming tflite the default
    runtime (what a job writes when TFLite scores as well and runs faster): the network alone, as jobs export it
    now, or with its NMS inside and a threshold floor, as older jobs did."""
    import shutil

    from effdet.config import Config
    from effdet.export import export_tflite, export_tflite_network
    from effdet.formats import FormatScore, FormatsManifest, write_manifest
    from effdet.model import build_model

    shutil.copytree(exported / "saved_model", folder / "saved_model")
    config = Config.from_yaml(folder / "saved_model" / "assets" / "config.yaml")
    if network_only:
        export_tflite_network(build_model(config), config, folder / "model.tflite", "float32")
    else:
        export_tflite(build_model(config), config, folder / "model.tflite", min_score_thresh=0.3)
    manifest = FormatsManifest(
        min_score=0.3,
        mean_rgb=list(config.model.mean_rgb),  # type: ignore[arg-type]
        formats={
            "saved_model": FormatScore(file="saved_model", size_bytes=1, ap=0.5, ms_per_image=80.0),
            "tflite": FormatScore(file="model.tflite", size_bytes=1, ap=0.499, ms_per_image=40.0),
        },
        default_runtime="tflite",
        **({"threshold_floor": []} if network_only else {}),
    )
    write_manifest(folder, manifest)
    job = module_service.job(module_service.dataset(), JobStatus.succeeded)
    return str(module_service.model(job, folder))


@pytest.fixture(scope="module")
def lite_model_id(module_service: Any, exported: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A model exported before TFLite files held the network alone (its manifest names no threshold_floor)."""
    return _with_tflite(module_service, exported, tmp_path_factory.mktemp("lite"), network_only=False)


def test_a_network_only_tflite_file_serves_any_threshold(
    module_service: Any, exported: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    model_id = _with_tflite(module_service, exported, tmp_path_factory.mktemp("network"), network_only=True)
    client = module_service.client
    image = {"file": ("a.jpg", _jpeg(300, 200), "image/jpeg")}
    low = client.post(f"/v1/models/{model_id}/predict", files=image, params={"score_threshold": 0.0})
    assert low.status_code == 200, low.text
    assert low.headers["X-Effdet-Runtime"] == "tflite", "no floor: the TFLite file answers under min_score"
    scores = [d["score"] for d in low.json()]
    assert scores, "an untrained model scores every box low, and threshold 0 keeps them"
    assert min(scores) < 0.3, "boxes under the export's min_score come back"
    asked = client.post(
        f"/v1/models/{model_id}/predict", files=image, params={"score_threshold": 0.1, "runtime": "tflite"}
    )
    assert asked.status_code == 200, asked.text
    assert all(d["score"] > 0.1 for d in asked.json())


def test_a_model_with_tflite_serves_it_by_default_and_each_runtime_on_request(
    module_service: Any, lite_model_id: str
) -> None:
    client = module_service.client
    shown = client.get(f"/v1/models/{lite_model_id}").json()
    assert shown["formats"] == ["saved_model", "tflite"]
    assert shown["default_runtime"] == "tflite"
    assert shown["format_scores"]["tflite"]["ap"] == 0.499
    image = {"file": ("a.jpg", _jpeg(300, 200), "image/jpeg")}
    default = client.post(f"/v1/models/{lite_model_id}/predict", files=image)
    assert default.status_code == 200, default.text
    assert default.headers["X-Effdet-Runtime"] == "tflite"
    saved = client.post(f"/v1/models/{lite_model_id}/predict", files=image, data={"runtime": "saved_model"})
    assert saved.headers["X-Effdet-Runtime"] == "saved_model"
    low = client.post(f"/v1/models/{lite_model_id}/predict", files=image, params={"score_threshold": 0.1})
    assert low.headers["X-Effdet-Runtime"] == "saved_model", "a threshold under the file's own falls back"
    refused = client.post(
        f"/v1/models/{lite_model_id}/predict", files=image, params={"score_threshold": 0.1, "runtime": "tflite"}
    )
    assert refused.status_code == 422
    assert "runtime=saved_model" in refused.json()["detail"]
    missing = client.post(f"/v1/models/{lite_model_id}/predict", files=image, params={"runtime": "tflite_float16"})
    assert missing.status_code == 422
    assert "exported as saved_model, tflite" in missing.json()["detail"]
    unknown = client.post(f"/v1/models/{lite_model_id}/predict", files=image, params={"runtime": "onnx"})
    assert unknown.status_code == 422
    download = client.get(f"/v1/models/{lite_model_id}/download", params={"format": "tflite"})
    assert download.status_code == 200
    assert download.content[4:8] == b"TFL3"
    assert client.get(f"/v1/models/{lite_model_id}/download", params={"format": "tflite_int8"}).status_code == 404
