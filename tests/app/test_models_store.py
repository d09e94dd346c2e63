"""Models in an S3-compatible store (moto's server, over HTTP): an API machine that never saw the export lists,
predicts with and downloads a model that only the store holds (fetched once into its cache), and deleting the
model removes it from the store."""

from __future__ import annotations

import io
import socket
import zipfile
from pathlib import Path
from typing import Any

import obstore
import pytest
from PIL import Image

from core.store import NotInStoreError, ObjectStore, model_prefix
from core.tables import JobStatus


def client_listed(service: Any) -> list[str]:
    listed = service.client.get("/v1/models")
    assert listed.status_code == 200, listed.text
    return [item["id"] for item in listed.json()["items"]]


def test_an_api_serves_a_model_that_only_the_store_holds(
    make_service: Any, s3_env: dict[str, str], exported: Path, tmp_path: Path
) -> None:
    url = s3_env["EFFDET_STORAGE_URL"]
    service = make_service(None, EFFDET_STORAGE_URL=url)
    job = service.job(service.dataset(), status=JobStatus.succeeded)
    model = service.model(job, Path("/a/worker/machine/models/m"))  # the worker's own path, not on this machine
    worker = ObjectStore(url, tmp_path / "worker-cache")
    worker.publish(model_prefix(model), exported)

    shown = service.client.get(f"/v1/models/{model}")
    assert shown.status_code == 200, shown.text
    assert shown.json()["formats"] == ["saved_model"]
    assert client_listed(service) == [model]
    assert not (service.data_dir / "cache" / "models").exists(), "showing or listing a model does not download it"
    image = io.BytesIO()
    Image.new("RGB", (160, 120), (90, 120, 60)).save(image, format="JPEG")
    predicted = service.client.post(
        f"/v1/models/{model}/predict",
        files={"file": ("a.jpg", image.getvalue(), "image/jpeg")},
        data={"score_threshold": "0"},
    )
    assert predicted.status_code == 200, predicted.text
    assert predicted.json(), "an untrained model at threshold 0 still answers boxes"
    downloaded = service.client.get(f"/v1/models/{model}/download")
    assert downloaded.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(downloaded.content)).namelist()
    assert any(name.endswith("saved_model.pb") for name in names)
    cached = list((service.data_dir / "cache" / "models" / model).iterdir())
    assert len(cached) == 1, "fetched once into this machine's cache"
    assert not (service.data_dir / "models" / model).exists()

    assert service.client.delete(f"/v1/models/{model}").status_code == 204
    with pytest.raises(NotInStoreError):
        worker.fetch(model_prefix(model))
    assert [item["path"] for item in obstore.list(worker._store, prefix=model_prefix(model)).collect()] == []


def test_an_unreachable_store_is_a_503_that_says_so_and_readyz_names_it(
    make_service: Any, s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port nothing listens on: the store is down
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    service = make_service(None, EFFDET_STORAGE_URL="s3://gone/effdet")
    model = service.model(service.job(service.dataset(), status=JobStatus.succeeded), Path("/elsewhere/m"))
    for answer in (service.client.get(f"/v1/models/{model}"), service.client.get(f"/v1/models/{model}/download")):
        assert answer.status_code == 503, answer.text
        assert "artefact store is unreachable" in answer.json()["detail"]
    ready = service.client.get("/readyz")
    assert ready.status_code == 503
    assert (ready.json()["database"], ready.json()["broker"]) == ("ok", "ok")
    assert ready.json()["store"] not in ("ok", "data dir"), "readyz names the store as what fails"
