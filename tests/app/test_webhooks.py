"""Webhooks through the API and the worker's delivery round: registered webhooks and per-resource callback URLs
get one signed POST per end (HMAC-SHA256 over the timestamp and body), failures are retried with backoff and
logged, ends before registration are not announced, and non-public addresses are refused unless allowed."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from core import webhooks
from core.db import session_scope
from core.settings import get_settings
from core.tables import DeliveryStatus, Job, JobStatus, WebhookDelivery, utcnow
from tests.app.conftest import BACKENDS
from tests.helpers.webhooks import Receiver
from worker.webhooks import deliver_due


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


@pytest.fixture(params=BACKENDS)
def hooked(request: pytest.FixtureRequest, make_service: Any) -> Any:
    """A service whose callbacks may reach 127.0.0.1 (the receiver), retrying after 50 ms, on both databases."""
    url = request.getfixturevalue("pg_schema") if request.param == "postgresql" else None
    return make_service(url, EFFDET_WEBHOOK_ALLOWED_NETWORKS='["127.0.0.1/32"]', EFFDET_WEBHOOK_RETRY_BASE_S="0.05")


def _verified(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Check a delivery as a receiver would: recompute the HMAC over '<t>.<body>' and compare."""
    parts = dict(item.split("=", 1) for item in headers[webhooks.SIGNATURE_HEADER].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - int(parts["t"])) < 300


def _finish(job_id: str) -> None:
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.status, job.finished_at = JobStatus.succeeded, utcnow()
        session.commit()


def test_ends_reach_webhooks_and_callbacks_signed_once_with_retries(hooked: Any, receiver: Receiver) -> None:
    client = hooked.client
    dataset = hooked.dataset()  # ready before any webhook existed: never announced
    everything = client.post("/v1/webhooks", json={"url": f"{receiver.url}/all"})
    assert everything.status_code == 201, everything.text
    job = client.post(
        "/v1/jobs", json={"dataset_id": dataset, "num_steps": 1, "callback_urls": [f"{receiver.url}/flaky"]}
    ).json()
    callbacks = client.get("/v1/webhooks", params={"resource_id": job["id"]}).json()
    assert callbacks["count"] == 1
    assert callbacks["items"][0]["url"].endswith("/flaky")
    assert deliver_due(get_settings()) == 0, "nothing has ended since the webhooks were made"

    _finish(job["id"])
    assert deliver_due(get_settings()) == 2
    assert sorted(path for path, _, _ in receiver.posts) == ["/all", "/flaky"]
    secrets = {"/all": everything.json()["secret"], "/flaky": callbacks["items"][0]["secret"]}
    for path, headers, body in receiver.posts:
        assert _verified(secrets[path], headers, body), path
        event = json.loads(body)
        assert event["type"] == headers["Effdet-Event"] == "job.succeeded"
        assert event["data"]["id"] == job["id"]
        assert event["data"]["status"] == "succeeded"
    flaky = client.get(f"/v1/webhooks/{callbacks['items'][0]['id']}/deliveries").json()["items"]
    assert [(d["status"], d["attempts"], d["response_status"]) for d in flaky] == [("pending", 1, 500)]
    assert "500" in flaky[0]["error"]
    assert flaky[0]["next_attempt_at"] is not None

    time.sleep(0.1)
    assert deliver_due(get_settings()) == 1, "only the failed one is tried again, after its backoff"
    flaky = client.get(f"/v1/webhooks/{callbacks['items'][0]['id']}/deliveries").json()["items"]
    assert [(d["status"], d["attempts"], d["response_status"]) for d in flaky] == [("delivered", 2, 200)]
    assert receiver.posts[-1][2] == receiver.posts[0 if receiver.posts[0][0] == "/flaky" else 1][2], "same event"
    assert deliver_due(get_settings()) == 0
    assert len(receiver.posts) == 3, "each end is announced once per webhook"

    assert client.delete(f"/v1/webhooks/{everything.json()['id']}").status_code == 204
    assert client.get(f"/v1/webhooks/{everything.json()['id']}/deliveries").status_code == 404
    assert client.get("/v1/webhooks").json()["count"] == 1


def test_a_delivery_never_answered_2xx_fails_after_a_day_of_backoff(hooked: Any) -> None:
    job = hooked.job(hooked.dataset())
    webhook = hooked.client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/nobody"}).json()
    _finish(job)
    assert deliver_due(get_settings()) == 1
    with session_scope() as session:
        delivery = session.query(WebhookDelivery).one()
        assert delivery.webhook_id == webhook["id"]
        assert delivery.status == DeliveryStatus.pending
        assert delivery.error, "nothing listens on port 9"
        assert delivery.response_status is None
        delivery_id, created = delivery.id, delivery.created_at
    assert webhooks.backoff(1, timedelta(seconds=30)) == timedelta(seconds=30)
    assert webhooks.backoff(12, timedelta(seconds=30)) == webhooks.MAX_BACKOFF
    late = created.replace(tzinfo=utcnow().tzinfo) + webhooks.RETRY_WINDOW
    webhooks.record_attempt(delivery_id, 503, "the receiver answered 503", late, timedelta(seconds=30))
    items = hooked.client.get(f"/v1/webhooks/{webhook['id']}/deliveries").json()["items"]
    assert [(d["status"], d["attempts"], d["next_attempt_at"]) for d in items] == [("failed", 2, None)]


def test_callback_urls_at_non_public_addresses_are_refused(hooked: Any, make_service: Any) -> None:
    client = hooked.client
    dataset = hooked.dataset()
    for url in ("http://10.1.2.3/hook", "http://169.254.169.254/latest", "http://[::1]:8000/x", "ftp://example.com/"):
        answer = client.post("/v1/webhooks", json={"url": url})
        assert answer.status_code == 422, url
        job = client.post("/v1/jobs", json={"dataset_id": dataset, "callback_urls": [url]})
        assert job.status_code == 422, url
        assert job.json()["detail"][0]["loc"] == ["body", "callback_urls", 0]
    assert "EFFDET_WEBHOOK_ALLOWED_NETWORKS" in client.post("/v1/webhooks", json={"url": "http://10.0.0.1/"}).text
    assert hooked.count(Job) == 0
    assert client.get("/v1/webhooks").json()["count"] == 0
    key = {"Idempotency-Key": "hook-1"}
    first = client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/ok"}, headers=key)
    assert first.status_code == 201, "allowed here"
    again = client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/ok"}, headers=key)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert client.get("/v1/webhooks").json()["count"] == 1
