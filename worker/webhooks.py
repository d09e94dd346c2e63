"""Sending webhook events from the worker: every few seconds (a `Periodic` thread of the worker's main process)
a delivery is queued for each end not yet announced, and every due delivery is POSTed, signed, and retried with
backoff for up to a day."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import httpx

from core import webhooks
from core.db import session_scope
from core.settings import Settings, get_settings
from core.tables import Webhook, WebhookDelivery, utcnow
from worker.periodic import Periodic

log = logging.getLogger(__name__)

USER_AGENT = "effdet-service-webhooks/1"


def send(delivery_id: str, settings: Settings) -> tuple[int | None, str | None]:
    """POST one delivery's event to its webhook; (the answer's status, None) or (None, why it was not sent)."""
    with session_scope() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        webhook = session.get(Webhook, delivery.webhook_id) if delivery is not None else None
        if delivery is None or webhook is None:
            return None, "the webhook was deleted"
        url, secret, event, payload = webhook.url, webhook.secret, delivery.event, delivery.payload
    try:
        webhooks.check_url(url, settings.webhook_allowed_networks)
    except webhooks.CallbackUrlError as err:
        return None, str(err)
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Effdet-Event": event,
        "Effdet-Delivery": delivery_id,
        webhooks.SIGNATURE_HEADER: webhooks.sign(secret, int(utcnow().timestamp()), body),
    }
    try:
        answer = httpx.post(url, content=body, headers=headers, timeout=settings.webhook_timeout_s)
    except httpx.HTTPError as err:
        return None, f"{type(err).__name__}: {err}"
    return answer.status_code, None if answer.is_success else f"the receiver answered {answer.status_code}"


def deliver_due(settings: Settings) -> int:
    """Queue deliveries for new ends, then send every due one; the count of attempts made."""
    webhooks.collect()
    base = timedelta(seconds=settings.webhook_retry_base_s)
    hold = timedelta(seconds=settings.webhook_timeout_s * 2)
    attempts = 0
    for delivery_id in webhooks.claim_due(utcnow(), hold):
        status, error = send(delivery_id, settings)
        if error is not None:
            log.warning("webhook delivery %s: %s", delivery_id, error)
        webhooks.record_attempt(delivery_id, status, error, utcnow(), base)
        attempts += 1
    return attempts


_courier: Periodic | None = None


def on_worker_ready(**_: Any) -> None:
    """Start delivering when the worker is ready (its main process; pool children never deliver)."""
    global _courier
    if _courier is None:
        settings = get_settings()
        _courier = Periodic("webhooks", settings.webhook_poll_s, lambda: deliver_due(get_settings()))
        _courier.start()


def on_worker_shutdown(**_: Any) -> None:
    """Stop the delivery thread (after the attempt in flight, if any)."""
    global _courier
    if _courier is not None:
        _courier.stop(grace=get_settings().webhook_timeout_s + 5)
        _courier = None


def install() -> None:
    """Connect the handlers to Celery's worker signals (called when the worker imports its tasks)."""
    from celery import signals

    signals.worker_ready.connect(on_worker_ready, weak=False)
    signals.worker_shutdown.connect(on_worker_shutdown, weak=False)
