"""Limits from settings: queued or running jobs and stored upload bytes per owner, predict requests per second
per key (429 with Retry-After, 413 for storage), each owner counted apart and reported by GET /v1/usage."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from app.keys import create_key
from core.tables import Dataset, Job, JobStatus, Scope
from tests.app.conftest import BACKENDS


def _limited(make_service: Any, url: str | None) -> Any:
    """A service with every limit set and train keys for owners 'team-a' and 'team-b'."""
    service = make_service(url, EFFDET_MAX_ACTIVE_JOBS="2", EFFDET_MAX_STORED_BYTES="3000", EFFDET_PREDICT_RPS="0.02")
    with service.session() as session:
        service.keys = {
            owner: {"Authorization": f"Bearer {create_key(session, owner, owner, Scope.train)[1]}"}
            for owner in ("team-a", "team-b")
        }
        session.commit()
    return service


@pytest.fixture(params=BACKENDS)
def limited(request: pytest.FixtureRequest, make_service: Any) -> Any:
    """The limited service on SQLite and on PostgreSQL."""
    return _limited(make_service, request.getfixturevalue("pg_schema") if request.param == "postgresql" else None)


def test_jobs_over_the_owners_limit_get_429_until_one_ends(limited: Any) -> None:
    client, a, b = limited.client, limited.keys["team-a"], limited.keys["team-b"]
    dataset = limited.dataset(owner="team-a")
    body = {"dataset_id": dataset, "num_steps": 1}
    first = client.post("/v1/jobs", json=body, headers={**a, "Idempotency-Key": "first"})
    assert first.status_code == 202, first.text
    assert client.post("/v1/jobs", json=body, headers=a).status_code == 202
    over = client.post("/v1/jobs", json=body, headers=a)
    assert over.status_code == 429
    assert over.headers["retry-after"] == "60"
    assert "EFFDET_MAX_ACTIVE_JOBS" in over.json()["detail"]
    replayed = client.post("/v1/jobs", json=body, headers={**a, "Idempotency-Key": "first"})
    assert replayed.status_code == 202, "a retry of a job already made is not a new job"
    assert replayed.json()["id"] == first.json()["id"]
    usage = client.get("/v1/usage", headers=a).json()
    assert usage["active_jobs"] == 2
    assert usage["limits"] == {"active_jobs": 2, "stored_bytes": 3000, "predict_rps": 0.02}
    other = limited.dataset(owner="team-b")
    assert client.post("/v1/jobs", json={"dataset_id": other}, headers=b).status_code == 202, "owners count apart"
    with limited.session() as session:
        job = session.get(Job, first.json()["id"])
        job.status = JobStatus.succeeded
        session.commit()
    assert client.post("/v1/jobs", json=body, headers=a).status_code == 202
    assert limited.count(Job) == 4


def test_an_upload_over_the_owners_stored_bytes_is_refused_and_leaves_nothing(limited: Any, zip_bytes: Any) -> None:
    client, a, b = limited.client, limited.keys["team-a"], limited.keys["team-b"]
    archive = zip_bytes({"a.xml": b"<annotation/>", "a.jpg": random.Random(0).randbytes(1600)})
    assert 1500 < len(archive) <= 3000, len(archive)
    first = client.post("/v1/datasets", files={"file": ("a.zip", archive)}, data={"name": "x"}, headers=a)
    assert first.status_code == 202, first.text
    files = sorted(limited.leftovers())
    over = client.post("/v1/datasets", files={"file": ("a.zip", archive)}, data={"name": "y"}, headers=a)
    assert over.status_code == 413
    assert "EFFDET_MAX_STORED_BYTES" in over.json()["detail"]
    assert sorted(limited.leftovers()) == files, "nothing of the refused upload is kept"
    assert limited.count(Dataset) == 1
    assert client.get("/v1/usage", headers=a).json()["upload_bytes"] == len(archive)
    assert client.post("/v1/datasets", files={"file": ("a.zip", archive)}, headers=b).status_code == 202


def test_predict_over_the_keys_rate_gets_429_with_retry_after(make_service: Any, exported: Path) -> None:
    limited = _limited(make_service, None)
    client = limited.client
    with limited.session() as session:
        device = {"Authorization": f"Bearer {create_key(session, 'device', 'team-a', Scope.predict)[1]}"}
        session.commit()
    job = limited.job(limited.dataset(owner="team-a"), JobStatus.succeeded, owner="team-a")
    model = limited.model(job, exported, owner="team-a")
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 90, 60)).save(buffer, format="JPEG")
    files = {"file": ("a.jpg", buffer.getvalue(), "image/jpeg")}
    url = f"/v1/models/{model}/predict"
    assert client.post(url, files=files, headers=device).status_code == 200
    over = client.post(url, files=files, headers=device)
    assert over.status_code == 429
    assert 1 <= int(over.headers["retry-after"]) <= 50
    assert "EFFDET_PREDICT_RPS" in over.json()["detail"]
    assert client.post(url, files=files, headers=limited.keys["team-a"]).status_code == 200, "each key has its own"
