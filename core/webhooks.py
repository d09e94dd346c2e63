"""Webhooks: which URLs may receive events, how events are signed, which ends of jobs, conversions and
evaluations are announced to which webhook, and the retry schedule of each delivery.

Deliveries are found rather than pushed: `collect` looks for ended resources that a webhook has not been told
about yet, so every path that ends one (a worker, a cancel in the API, a recovery sweep) is covered without
hooks in each, and the unique (webhook, resource, event) makes racing workers announce each end once.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import socket
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import session_scope
from core.evaluations import ENDED
from core.states import aware
from core.tables import (
    FINISHED,
    Dataset,
    DatasetStatus,
    DeliveryStatus,
    Evaluation,
    Job,
    Webhook,
    WebhookDelivery,
    new_id,
    utcnow,
)

SIGNATURE_HEADER = "Effdet-Signature"
"""`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the webhook's secret>`, as Stripe signs."""

RETRY_WINDOW = timedelta(hours=24)
"""A delivery without a 2xx this long after its event is failed."""

MAX_BACKOFF = timedelta(hours=1)

MAX_CALLBACK_URLS = 5

Announced = Job | Dataset | Evaluation


class CallbackUrlError(ValueError):
    """A URL that may not receive webhooks; the message says why."""


def new_secret() -> str:
    """A fresh signing secret."""
    return "whsec_" + secrets.token_hex(24)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Loopback, private, link-local and other non-public addresses: where a callback could reach inside."""
    return not address.is_global or address.is_multicast


def check_url(url: str, allowed_networks: Sequence[str] = ()) -> None:
    """Refuse a callback URL that is not http(s) or whose host resolves to a non-public address outside
    `allowed_networks` (CIDRs from settings). Run when a webhook is registered and again before each delivery,
    so a name that later resolves inside is still refused."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CallbackUrlError(f"{url!r} is not an http:// or https:// URL with a host")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except (OSError, UnicodeError) as err:
        raise CallbackUrlError(f"the host of {url!r} cannot be resolved ({err})") from None
    allowed = [ipaddress.ip_network(network, strict=False) for network in allowed_networks]
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if _refused(address) and not any(address in network for network in allowed):
            raise CallbackUrlError(
                f"{url!r} resolves to {address}, a loopback, private or link-local address; callbacks go to public "
                "addresses unless the server's EFFDET_WEBHOOK_ALLOWED_NETWORKS names that network"
            )


def _ended(table: type[Announced]) -> tuple[ColumnElement[bool], Any]:
    """The condition for an ended row of `table`, and the column holding when it ended."""
    if table is Dataset:
        return Dataset.status.in_([DatasetStatus.ready.value, DatasetStatus.failed.value]), Dataset.updated_at
    if table is Evaluation:
        return Evaluation.status.in_([s.value for s in ENDED]), Evaluation.finished_at
    return Job.status.in_([s.value for s in FINISHED]), Job.finished_at


NOUN = {Job: "job", Dataset: "dataset", Evaluation: "evaluation"}


def event_data(row: Announced) -> dict[str, Any]:
    """What an event says about the ended resource: enough to act on it without a first GET."""
    data: dict[str, Any] = {"id": row.id, "status": row.status, "error": row.error}
    if isinstance(row, Job):
        data |= {"dataset_id": row.dataset_id, "model_id": row.model_id, "model": row.model_name}
    elif isinstance(row, Evaluation):
        data |= {"model_id": row.model_id, "dataset_id": row.dataset_id, "split": row.split}
        data["metrics"] = (row.result or {}).get("metrics")
    else:
        data |= {"name": row.name, "num_images": row.num_images, "num_boxes": row.num_boxes}
    return data


def _unannounced(session: Session, webhook: Webhook, table: type[Announced]) -> list[Announced]:
    """The rows of `table` that ended after the webhook was made and that it has not been told about."""
    ended, ended_at = _ended(table)
    told = exists().where(
        WebhookDelivery.webhook_id == webhook.id,
        WebhookDelivery.resource_id == table.id,
        WebhookDelivery.event == NOUN[table] + "." + table.status,
    )
    query = select(table).where(ended, ended_at >= webhook.created_at, table.deleted_at.is_(None), ~told)
    query = query.where(table.owner.is_(None) if webhook.owner is None else table.owner == webhook.owner)
    if webhook.resource_id is not None:
        query = query.where(table.id == webhook.resource_id)
    return list(session.scalars(query))


def collect() -> int:
    """Queue a delivery for every end a webhook has not been told about yet; the count queued."""
    queued = 0
    with session_scope() as session:
        for webhook in session.scalars(select(Webhook)).all():
            for table in (Dataset, Job, Evaluation):
                for row in _unannounced(session, webhook, table):
                    event = f"{NOUN[table]}.{row.status}"
                    delivery_id = new_id()
                    payload = {
                        "id": delivery_id,
                        "type": event,
                        "created_at": utcnow().isoformat(),
                        "data": event_data(row),
                    }
                    try:
                        with session.begin_nested():
                            session.add(
                                WebhookDelivery(
                                    id=delivery_id,
                                    webhook_id=webhook.id,
                                    resource_id=row.id,
                                    event=event,
                                    payload=payload,
                                )
                            )
                        queued += 1
                    except IntegrityError:
                        pass  # another worker queued it first
    return queued


def claim_due(now: datetime, hold: timedelta, limit: int = 20) -> list[str]:
    """Take up to `limit` pending deliveries whose attempt is due: each is pushed `hold` into the future by a
    conditional update, so two workers never send the same attempt."""
    claimed = []
    with session_scope() as session:
        due = select(WebhookDelivery.id, WebhookDelivery.next_attempt_at).where(
            WebhookDelivery.status == DeliveryStatus.pending.value, WebhookDelivery.next_attempt_at <= now
        )
        for delivery_id, when in session.execute(due.order_by(WebhookDelivery.next_attempt_at).limit(limit)):
            took = session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id, WebhookDelivery.next_attempt_at == when)
                .values(next_attempt_at=now + hold)
            )
            if took.rowcount:  # type: ignore[attr-defined]
                claimed.append(delivery_id)
        session.commit()
    return claimed


def backoff(attempts: int, base: timedelta) -> timedelta:
    """The wait after the `attempts`-th failed attempt: doubling from `base`, at most an hour."""
    return min(base * 2 ** (attempts - 1), MAX_BACKOFF)


def record_attempt(
    delivery_id: str, response_status: int | None, error: str | None, now: datetime, base: timedelta
) -> None:
    """Store an attempt's outcome: delivered on a 2xx, else retried after the backoff, or failed once the next
    attempt would fall outside the retry window."""
    with session_scope() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            return  # its webhook was deleted meanwhile
        delivery.attempts += 1
        delivery.response_status = response_status
        delivery.error = error
        created = aware(delivery.created_at) or now
        retry_at = now + backoff(delivery.attempts, base)
        if response_status is not None and 200 <= response_status < 300:
            delivery.status, delivery.finished_at, delivery.error = DeliveryStatus.delivered, now, None
        elif retry_at > created + RETRY_WINDOW:
            delivery.status, delivery.finished_at = DeliveryStatus.failed, now
        else:
            delivery.next_attempt_at = retry_at
        session.commit()
