"""A dataset's life with the S3 store on (moto's server over HTTP), the API and the worker as different machines
(data dirs of their own, one database): the upload goes to the store and leaves the API machine, the worker
converts from the store and publishes the records, the API shows images from its cache, a re-label converts
again (the old records leave the store first), a fixed version is built on a third machine from its parent's
stored records, and deletion empties the store."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import obstore
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from core.db import reset_caches
from core.settings import get_settings
from core.store import ObjectStore, dataset_input_prefix, records_prefix
from core.tables import DatasetStatus
from effdet.data.layout import GROUND_TRUTH_FILE, REPORT_FILE

NUM_IMAGES = 6


@pytest.mark.slow
def test_a_dataset_lives_in_the_store_across_machines(
    s3_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    use_service: Callable[..., Path],
    tmp_path: Path,
    rows: Any,
) -> None:
    from effdet.data.synthetic import write_dataset
    from worker.convert import run_conversion

    url = s3_env["EFFDET_STORAGE_URL"]
    bucket = ObjectStore(url, tmp_path / "reader-cache")
    use_service(monkeypatch, tmp_path / "api", f"sqlite:///{tmp_path / 'shared.db'}")
    monkeypatch.setenv("EFFDET_STORAGE_URL", url)

    def machine(name: str) -> Path:
        monkeypatch.setenv("EFFDET_DATA_DIR", str(tmp_path / name))
        reset_caches()
        return get_settings().data_dir

    def listed(prefix: str) -> list[str]:
        return [item["path"] for item in obstore.list(bucket._store, prefix=prefix).collect()]

    machine("api")
    raw = write_dataset(tmp_path / "plates", NUM_IMAGES, "voc", seed=5)
    archive = rows.zip_folder(raw, tmp_path / "plates.zip")
    with TestClient(create_app(get_settings())) as client:
        uploaded = client.post(
            "/v1/datasets",
            files={"file": ("plates.zip", archive.read_bytes(), "application/zip")},
            data={"val_fraction": "0.34"},
        )
        assert uploaded.status_code == 202, uploaded.text
        dataset_id = uploaded.json()["id"]
    assert (bucket.fetch(dataset_input_prefix(dataset_id)) / "upload.zip").read_bytes() == archive.read_bytes()
    assert not [p for p in (tmp_path / "api").rglob("*.zip")], "the API machine keeps no copy of the upload"

    worker_dir = machine("worker")
    run_conversion(dataset_id)
    assert rows.dataset(dataset_id).status == DatasetStatus.ready, rows.dataset(dataset_id).error
    first = bucket.fetch(records_prefix(dataset_id))
    assert (first / REPORT_FILE).is_file()
    assert not (worker_dir / "datasets" / dataset_id / "tfrecords").exists(), "the records live in the store"

    machine("api")
    with TestClient(create_app(get_settings())) as client:
        images = client.get(f"/v1/datasets/{dataset_id}/images").json()["items"]
        assert len(images) == NUM_IMAGES
        thumbnail = client.get(f"/v1/datasets/{dataset_id}/images/{images[0]['id']}/thumbnail")
        assert thumbnail.status_code == 200, thumbnail.text
        relabelled = client.patch(f"/v1/datasets/{dataset_id}", json={"class_aliases": {"plate": "licence plate"}})
        assert relabelled.status_code == 202, relabelled.text
    assert listed(records_prefix(dataset_id)) == [], "a re-label takes the old records out of the store"

    machine("worker")
    run_conversion(dataset_id)
    dataset = rows.dataset(dataset_id)
    assert dataset.status == DatasetStatus.ready, dataset.error
    assert list((dataset.label_map or {}).values()) == ["licence plate"], "converted again, with the new name"

    image_id = json.loads((bucket.fetch(records_prefix(dataset_id)) / GROUND_TRUTH_FILE).read_text())["images"][0]["id"]
    machine("api")
    with TestClient(create_app(get_settings())) as client:
        fix = {"action": "add_box", "image_id": image_id, "label": "licence plate", "box": [4, 4, 30, 12]}
        made = client.post(f"/v1/datasets/{dataset_id}/versions", json={"fixes": [fix]})
        assert made.status_code == 202, made.text
        version_id = made.json()["id"]

    machine("another-worker")  # never saw the parent
    run_conversion(version_id)
    version = rows.dataset(version_id)
    assert version.status == DatasetStatus.ready, version.error
    assert version.num_boxes == dataset.num_boxes + 1

    machine("api")
    with TestClient(create_app(get_settings())) as client:
        for deleted in (version_id, dataset_id):
            assert client.delete(f"/v1/datasets/{deleted}").status_code == 204
    assert listed("datasets") == [], "deleting the datasets empties their part of the store"
