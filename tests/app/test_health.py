"""Health, readiness, metrics, errors when the database is down, the OpenAPI page, the lazy TensorFlow import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from core.tables import JobStatus
from tests.helpers.checkpoints import write_variant_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def test_readyz_is_ready_with_database_and_broker(sqlite_service: Any) -> None:
    response = sqlite_service.client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": "ok", "broker": "ok", "store": "data dir"}


def test_readyz_503_when_broker_unreachable(make_service: Any) -> None:
    service = make_service(EFFDET_BROKER_URL="redis://127.0.0.1:1/0")
    response = service.client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["database"] == "ok"
    assert body["broker"] != "ok"
    assert service.client.get("/healthz").status_code == 200


def test_database_down_is_503_not_500(make_service: Any) -> None:
    service = make_service("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    response = service.client.get("/v1/datasets")
    assert response.status_code == 503
    assert "database is unavailable" in response.json()["detail"]
    ready = service.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["database"] != "ok"
    assert service.client.get("/healthz").status_code == 200


def test_metrics_count_requests_and_jobs(sqlite_service: Any) -> None:
    sqlite_service.job(sqlite_service.dataset(), JobStatus.training)
    client = sqlite_service.client
    client.get("/v1/jobs")
    text = client.get("/metrics").text
    assert 'effdet_http_requests_total{method="GET",route="/v1/jobs",status="200"}' in text
    assert 'effdet_http_request_duration_seconds_count{method="GET",route="/v1/jobs"}' in text
    assert 'effdet_jobs{status="training"} 1.0' in text
    assert "effdet_predict_duration_seconds_count" in text


def test_home_links_to_docs(sqlite_service: Any) -> None:
    response = sqlite_service.client.get("/")
    assert response.status_code == 200
    assert 'href="docs"' in response.text


def test_openapi_documents_every_route_with_examples(sqlite_service: Any) -> None:
    spec = sqlite_service.client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/v1/datasets",
        "/v1/datasets/{dataset_id}",
        "/v1/jobs",
        "/v1/jobs/{job_id}/events",
        "/v1/jobs/{job_id}/logs",
        "/v1/jobs/{job_id}/cancel",
        "/v1/models/{model_id}/download",
        "/v1/models/{model_id}/predict",
        "/v1/checkpoints",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths, path
    upload = paths["/v1/datasets"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert upload["required"] == ["file"]
    assert "val_fraction" in upload["properties"]
    schemas = spec["components"]["schemas"]
    for name in ("JobCreate", "JobPublic", "DatasetPublic", "ModelPublic", "DetectionPublic"):
        assert schemas[name].get("examples"), name


def test_checkpoints_lists_the_operator_folder(sqlite_service: Any) -> None:
    folder = sqlite_service.data_dir / "checkpoints"
    write_variant_checkpoint(folder / "d0", "efficientdet-d0")
    (folder / "automl-d1").mkdir()
    write_variant_checkpoint(folder / "automl-d1" / "model", "efficientdet-d1")
    (folder / "automl-d1" / "checkpoint").write_text('model_checkpoint_path: "model"')
    backbone = folder / "lite0-backbone" / "weights" / "weights"
    write_variant_checkpoint(backbone, "efficientdet-lite0", backbone_only=True)
    (folder / "broken.index").write_bytes(b"names")
    (folder / "efficientdet-d2.tar.gz").write_bytes(b"gz")
    items = {c["name"]: c for c in sqlite_service.client.get("/v1/checkpoints").json()["items"]}
    assert items["d0"]["format"] == "tf1-checkpoint"
    assert items["d0"]["layout"] == "prefix"
    assert items["d0"]["size_bytes"] > 100
    assert items["d0"]["usable"]
    assert items["d0"]["variants"] == ["efficientdet-d0"]
    assert (items["automl-d1"]["layout"], items["automl-d1"]["variants"]) == ("checkpoint-dir", ["efficientdet-d1"])
    assert (items["lite0-backbone"]["layout"], items["lite0-backbone"]["variants"]) == (
        "run-dir",
        ["efficientdet-lite0"],
    )
    assert (items["broken"]["format"], items["broken"]["usable"]) == ("unreadable", False)
    assert "not a TensorFlow checkpoint index" in items["broken"]["note"]
    assert items["efficientdet-d2.tar.gz"]["format"] == "archive"
    assert not items["efficientdet-d2.tar.gz"]["usable"]


def test_app_import_does_not_import_tensorflow() -> None:
    code = "import sys, app.main; app.main.create_app(); assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
