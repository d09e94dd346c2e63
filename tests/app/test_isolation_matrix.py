"""Every API operation x every kind of caller: the owner's key, another owner's key, a predict-scoped key of the
same owner, a revoked key and no key. Another owner's ids answer 404 (never a 403 that confirms they exist), scope
answers 403, a bad or missing key 401. The operations come from the OpenAPI document, so a new one without a row
here fails the test."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from app.keys import create_key, revoke_key
from core.tables import Evaluation, EvaluationStatus, JobStatus, Scope, Webhook, utcnow

OWNER, OTHER = "team-a", "team-b"


@dataclass(frozen=True)
class Row:
    """How an operation is reached and what guards it: the scope it needs and whether it names the owner's ids."""

    scope: Scope
    owned: bool  # the path names one of the owner's resources: another owner gets 404
    destructive: bool = False  # the owner's own call is left out (it would delete or end the resource)
    other: int = 404  # what another owner gets when the body, not the path, names the owner's resource


TABLE: dict[str, Row] = {
    "GET /metrics": Row(Scope.predict, owned=False),
    "GET /v1/datasets": Row(Scope.train, owned=False),
    "POST /v1/datasets": Row(Scope.train, owned=False),
    "GET /v1/datasets/{dataset_id}": Row(Scope.train, owned=True),
    "PATCH /v1/datasets/{dataset_id}": Row(Scope.train, owned=True, destructive=True),
    "DELETE /v1/datasets/{dataset_id}": Row(Scope.train, owned=True, destructive=True),
    "GET /v1/datasets/{dataset_id}/images": Row(Scope.train, owned=True),
    "GET /v1/datasets/{dataset_id}/images/{image_id}/thumbnail": Row(Scope.train, owned=True),
    "POST /v1/datasets/{dataset_id}/versions": Row(Scope.train, owned=True, destructive=True),
    "GET /v1/jobs": Row(Scope.train, owned=False),
    "POST /v1/jobs": Row(Scope.train, owned=True, destructive=True, other=422),
    "GET /v1/jobs/{job_id}": Row(Scope.train, owned=True),
    "DELETE /v1/jobs/{job_id}": Row(Scope.train, owned=True, destructive=True),
    "GET /v1/jobs/{job_id}/events": Row(Scope.train, owned=True),
    "GET /v1/jobs/{job_id}/logs": Row(Scope.train, owned=True),
    "POST /v1/jobs/{job_id}/cancel": Row(Scope.train, owned=True, destructive=True),
    "GET /v1/jobs/{job_id}/plots/{name}.png": Row(Scope.train, owned=True),
    "GET /v1/models": Row(Scope.predict, owned=False),
    "GET /v1/models/{model_id}": Row(Scope.predict, owned=True),
    "DELETE /v1/models/{model_id}": Row(Scope.train, owned=True, destructive=True),
    "GET /v1/models/{model_id}/download": Row(Scope.predict, owned=True),
    "GET /v1/models/{model_id}/val-images": Row(Scope.train, owned=True),
    "POST /v1/models/{model_id}/evaluations": Row(Scope.train, owned=True, destructive=True),
    "POST /v1/models/{model_id}/predict": Row(Scope.predict, owned=True),
    "GET /v1/evaluations": Row(Scope.train, owned=False),
    "GET /v1/evaluations/{evaluation_id}": Row(Scope.train, owned=True),
    "DELETE /v1/evaluations/{evaluation_id}": Row(Scope.train, owned=True, destructive=True),
    "POST /v1/evaluations/{evaluation_id}/cancel": Row(Scope.train, owned=True, destructive=True),
    "GET /v1/evaluations/{evaluation_id}/label-errors": Row(Scope.train, owned=True),
    "GET /v1/evaluations/{evaluation_id}/images": Row(Scope.train, owned=True),
    "GET /v1/checkpoints": Row(Scope.train, owned=False),
    "GET /v1/keys": Row(Scope.admin, owned=False),
    "POST /v1/keys": Row(Scope.admin, owned=False, destructive=True),
    "POST /v1/keys/{name}/revoke": Row(Scope.admin, owned=False, destructive=True),
    "GET /v1/usage": Row(Scope.predict, owned=False),
    "GET /v1/usage/owners": Row(Scope.admin, owned=False),
    "GET /v1/webhooks": Row(Scope.train, owned=False),
    "POST /v1/webhooks": Row(Scope.train, owned=False),
    "GET /v1/webhooks/{webhook_id}": Row(Scope.train, owned=True),
    "DELETE /v1/webhooks/{webhook_id}": Row(Scope.train, owned=True, destructive=True),
    "GET /v1/webhooks/{webhook_id}/deliveries": Row(Scope.train, owned=True),
}
RANK = {Scope.predict: 0, Scope.train: 1, Scope.admin: 2}
OWNERSHIP_404 = "lists yours"


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 90, 60)).save(buffer, format="PNG")
    return buffer.getvalue()


def _request(client: Any, method: str, path: str, key: str | None, ids: dict[str, str], zip_bytes: Any) -> Any:
    url = path.format(name="loss" if "plots" in path else "nobody", image_id="0123456789abcdef", **ids)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    kwargs: dict[str, Any] = {}
    if url.endswith("/predict"):
        kwargs["files"] = {"file": ("a.png", _png(), "image/png")}
    elif method == "POST" and path == "/v1/datasets":
        kwargs["files"] = {"file": ("a.zip", zip_bytes({"a.xml": b"<annotation/>"}))}
    elif method == "POST" and path == "/v1/jobs":
        kwargs["json"] = {"dataset_id": ids["dataset_id"], "num_steps": 1}
    elif path.endswith("/versions"):
        kwargs["json"] = {"fixes": [{"action": "delete_box", "image_id": 1, "annotation_id": 100000}]}
    elif path.endswith("/evaluations"):
        kwargs["json"] = {}
    elif path == "/v1/webhooks" and method == "POST":
        kwargs["json"] = {"url": "http://10.0.0.1/hook"}
    elif path == "/v1/keys" and method == "POST":
        kwargs["json"] = {"name": "made-in-matrix", "scope": "predict"}
    elif method == "PATCH":
        kwargs["json"] = {"class_aliases": {}}
    if path.endswith("/events"):
        kwargs["params"] = {"follow": "false"}
    return client.request(method, url, headers=headers, **kwargs)


def _resources(service: Any, model_folder: Path) -> dict[str, str]:
    dataset = service.dataset(owner=OWNER)
    job = service.job(dataset, status=JobStatus.succeeded, owner=OWNER)
    model = service.model(job, model_folder, owner=OWNER)
    evaluation = Evaluation(
        owner=OWNER,
        model_id=model,
        dataset_id=dataset,
        split="val",
        format="saved_model",
        score_threshold=0.4,
        status=EvaluationStatus.succeeded,
        cancel_requested=False,
        attempts=0,
        finished_at=utcnow(),
    )
    webhook = Webhook(owner=OWNER, url="https://example.com/hook", secret="whsec_test", resource_id=job)
    service.add(evaluation, webhook)
    return {
        "dataset_id": dataset,
        "job_id": job,
        "model_id": model,
        "evaluation_id": evaluation.id,
        "webhook_id": webhook.id,
    }


def test_every_operation_answers_each_caller_as_its_key_allows(service: Any, exported: Path, zip_bytes: Any) -> None:
    with service.session() as session:
        keys = {
            "owner": create_key(session, "owner", OWNER, Scope.train)[1],
            "other": create_key(session, "other", OTHER, Scope.train)[1],
            "predict": create_key(session, "device", OWNER, Scope.predict)[1],
            "revoked": create_key(session, "old", OWNER, Scope.train)[1],
        }
        revoke_key(session, "old")
        session.commit()
    ids = _resources(service, exported)
    operations = {
        f"{method.upper()} {path}"
        for path, methods in service.client.app.openapi()["paths"].items()
        for method in methods
        if path.startswith("/v1/") or path == "/metrics"
    }
    assert operations == set(TABLE), "every operation needs a row in TABLE (and every row an operation)"

    failures = []
    for operation, row in sorted(TABLE.items()):
        method, path = operation.split(" ")
        for caller in ("none", "revoked", "predict", "other", "owner"):
            if caller == "owner" and row.destructive:
                continue
            response = _request(service.client, method, path, keys.get(caller), ids, zip_bytes)
            code, text = response.status_code, response.text
            scope = Scope.predict if caller == "predict" else Scope.train
            if caller in ("none", "revoked"):
                ok = code == 401
            elif RANK[scope] < RANK[row.scope]:
                ok = code == 403
            elif caller == "other" and row.owned:
                ok = code == row.other and OWNERSHIP_404 in text
            elif caller == "other":
                ok = code not in (401, 403) and not any(value in text for value in ids.values()) and OWNER not in text
            else:
                ok = code not in (401, 403) and not (code == 404 and OWNERSHIP_404 in text)
            if not ok:
                failures.append(f"{operation} as {caller}: {code} {text[:200]}")
    assert not failures, "\n".join(failures)


def test_admin_keys_manage_keys_and_see_every_owners_usage(service: Any) -> None:
    with service.session() as session:
        admin = create_key(session, "ops", "ops", Scope.admin)[1]
        session.commit()
    service.dataset(owner=OWNER)
    client, auth = service.client, {"Authorization": f"Bearer {admin}"}
    made = client.post("/v1/keys", json={"name": "camera-7", "owner": OWNER, "scope": "predict"}, headers=auth)
    assert made.status_code == 201, made.text
    device = {"Authorization": f"Bearer {made.json()['key']}"}
    assert client.get("/v1/models", headers=device).status_code == 200
    assert client.get("/v1/datasets", headers=device).status_code == 403
    usage = client.get("/v1/usage", headers=device).json()
    assert usage["owner"] == OWNER
    assert usage["datasets"] == 1
    again = client.post("/v1/keys", json={"name": "camera-7", "scope": "predict"}, headers=auth)
    assert again.status_code == 409
    assert "revoke it first" in again.json()["detail"]
    assert client.post("/v1/keys", json={"name": "x", "owner": "a" * 32}, headers=auth).status_code == 409
    listed = {item["name"]: item for item in client.get("/v1/keys", headers=auth).json()["items"]}
    assert listed["camera-7"]["owner"] == OWNER
    assert listed["camera-7"]["scope"] == "predict"
    assert "key" not in listed["camera-7"]
    owners = {item["owner"]: item for item in client.get("/v1/usage/owners", headers=auth).json()["items"]}
    assert owners[OWNER]["datasets"] == 1
    revoked = client.post("/v1/keys/camera-7/revoke", headers=auth)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"]
    answer = client.get("/v1/models", headers=device)
    assert answer.status_code == 401
    assert "revoked" in answer.json()["detail"]
    assert client.post("/v1/keys/camera-7/revoke", headers=auth).status_code == 404


def test_a_server_with_keys_off_makes_no_key_over_http(sqlite_service: Any) -> None:
    answer = sqlite_service.client.post("/v1/keys", json={"name": "first", "scope": "admin"})
    assert answer.status_code == 403
    assert "effdet-service keys create" in answer.json()["detail"]
    assert sqlite_service.client.get("/v1/datasets").status_code == 200, "auth is still off"


@pytest.mark.parametrize("scope", ["predict", "train"])
def test_metrics_name_no_owner_or_resource(service: Any, scope: str) -> None:
    with service.session() as session:
        key = create_key(session, "k", OTHER, Scope(scope))[1]
        session.commit()
    dataset = service.dataset(owner=OWNER)
    text = service.client.get("/metrics", headers={"Authorization": f"Bearer {key}"}).text
    assert "effdet_http_requests" in text
    assert dataset not in text
    assert OWNER not in text
