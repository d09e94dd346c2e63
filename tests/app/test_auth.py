"""API keys: with keys configured every API route needs one, and a key sees only its own resources."""

from __future__ import annotations

from typing import Any

from app.auth import static_owner
from app.keys import create_key
from core.tables import ApiKey, Dataset

STATIC_KEY = "static-key-one"


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_auth_isolates_keys(service: Any, zip_bytes: Any) -> None:
    with service.session() as session:
        row, stored_key = create_key(session, "second user")
        session.commit()
    assert service.row(ApiKey, row.id).key_hash != stored_key, "only the hash is stored"
    client = service.client
    upload = client.post(
        "/v1/datasets", files={"file": ("a.zip", zip_bytes({"a.xml": b"<annotation/>"}))}, headers=_auth(stored_key)
    )
    assert upload.status_code == 202, upload.text
    theirs = upload.json()["id"]
    assert service.row(Dataset, theirs).owner == row.id
    mine = service.dataset(owner=static_owner(STATIC_KEY))

    client.app.state.settings.api_keys = [STATIC_KEY]  # type: ignore[attr-defined]
    assert client.get(f"/v1/datasets/{theirs}", headers=_auth(STATIC_KEY)).status_code == 404
    assert client.get(f"/v1/datasets/{mine}", headers=_auth(STATIC_KEY)).status_code == 200
    assert [d["id"] for d in client.get("/v1/datasets", headers=_auth(STATIC_KEY)).json()["items"]] == [mine]
    assert [d["id"] for d in client.get("/v1/datasets", headers=_auth(stored_key)).json()["items"]] == [theirs]
    assert client.delete(f"/v1/datasets/{mine}", headers=_auth(stored_key)).status_code == 404
    job = client.post("/v1/jobs", json={"dataset_id": mine, "num_steps": 1}, headers=_auth(stored_key))
    assert "not found" in job.json()["detail"][0]["msg"]


def test_auth_needs_a_valid_key_except_for_health(sqlite_service: Any) -> None:
    client = sqlite_service.client
    client.app.state.settings.api_keys = [STATIC_KEY]  # type: ignore[attr-defined]
    for path in ("/v1/datasets", "/v1/jobs", "/v1/models", "/v1/checkpoints", "/metrics"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
    assert client.get("/v1/datasets", headers=_auth("wrong")).status_code == 401
    assert client.get("/v1/datasets", headers=_auth(STATIC_KEY)).status_code == 200
    assert client.post("/v1/datasets", files={"file": ("a.zip", b"x")}).status_code == 401
    assert sqlite_service.leftovers() == []
    for path in ("/healthz", "/readyz", "/"):
        assert client.get(path).status_code == 200, path


def test_auth_is_off_without_keys(sqlite_service: Any) -> None:
    assert sqlite_service.client.get("/v1/datasets").status_code == 200
