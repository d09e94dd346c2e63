"""Webhooks: register a URL for every end of the owner's jobs, conversions and evaluations, list them (with the
callbacks named at creation), delete them, and read each one's delivery log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy import delete, func, select

from app.auth import TRAIN, CurrentOwner, get_owned
from app.callbacks import check_callbacks
from app.deps import SessionDep, SettingsDep
from app.idempotency import IdempotencyDep, create_once, mark_replayed, replay_body
from app.schemas import (
    AUTH_RESPONSES,
    DeliveriesPage,
    DeliveryPublic,
    ErrorDetail,
    WebhookCreate,
    WebhookPublic,
    WebhooksPage,
)
from core.tables import Webhook, WebhookDelivery, new_id
from core.webhooks import new_secret

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=AUTH_RESPONSES, dependencies=[TRAIN])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorDetail}}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={
        400: {"model": ErrorDetail, "description": "the body is not readable JSON (e.g. not UTF-8)"},
        422: {"model": ErrorDetail, "description": "not an http(s) URL, or not at a public address"},
    },
)
def create_webhook(
    body: WebhookCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    owner: CurrentOwner,
    key: IdempotencyDep,
) -> WebhookPublic:
    """Register a URL that gets a signed POST whenever one of your jobs, conversions or evaluations ends. With an
    Idempotency-Key, a retry returns the first webhook."""
    request_hash, earlier = replay_body(session, key, request, response, body, Webhook)
    if earlier is not None:
        return WebhookPublic.from_row(earlier)
    check_callbacks([body.url], settings, field="url")
    new = Webhook(id=new_id(), owner=owner, url=body.url, secret=new_secret())

    def store() -> Webhook:
        session.add(new)
        session.commit()
        return new

    row = create_once(session, key, request_hash, new, store)
    if row is not new:
        mark_replayed(response)
    return WebhookPublic.from_row(row)


@router.get("")
def list_webhooks(
    session: SessionDep,
    owner: CurrentOwner,
    resource_id: Annotated[
        str | None, Query(description="only the callbacks of this job, dataset or evaluation")
    ] = None,
) -> WebhooksPage:
    """Your webhooks and callbacks, oldest first, with the secrets that sign their events."""
    query = select(Webhook).order_by(Webhook.created_at, Webhook.id)
    if owner is not None:
        query = query.where(Webhook.owner == owner)
    if resource_id is not None:
        query = query.where(Webhook.resource_id == resource_id)
    rows = session.scalars(query).all()
    return WebhooksPage(items=[WebhookPublic.from_row(row) for row in rows], count=len(rows))


@router.get("/{webhook_id}", responses=NOT_FOUND)
def get_webhook(webhook_id: str, session: SessionDep, owner: CurrentOwner) -> WebhookPublic:
    """One webhook."""
    return WebhookPublic.from_row(get_owned(session, Webhook, webhook_id, owner))


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
def delete_webhook(webhook_id: str, session: SessionDep, owner: CurrentOwner) -> None:
    """Stop sending to this webhook; its deliveries, pending ones too, go with it."""
    row = get_owned(session, Webhook, webhook_id, owner)
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == row.id))
    session.delete(row)
    session.commit()


@router.get("/{webhook_id}/deliveries", responses=NOT_FOUND)
def list_deliveries(
    webhook_id: str,
    session: SessionDep,
    owner: CurrentOwner,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> DeliveriesPage:
    """The webhook's deliveries, newest first: event, attempts, the receiver's last answer, next attempt."""
    row = get_owned(session, Webhook, webhook_id, owner)
    of_webhook = WebhookDelivery.webhook_id == row.id
    rows = session.scalars(
        select(WebhookDelivery).where(of_webhook).order_by(WebhookDelivery.created_at.desc()).limit(limit)
    ).all()
    count = session.scalar(select(func.count()).select_from(WebhookDelivery).where(of_webhook)) or 0
    return DeliveriesPage(items=[DeliveryPublic.from_row(r) for r in rows], count=count)
