"""Webhooks: register a URL for every end of the owner's jobs, conversions and evaluations, list them (with the
callbacks named at creation), delete them, and read each one's delivery log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.auth import TRAIN, CurrentOwner
from app.callbacks import check_callbacks
from app.deps import SessionDep, SettingsDep
from app.schemas import (
    AUTH_RESPONSES,
    DeliveriesPage,
    DeliveryPublic,
    ErrorDetail,
    WebhookCreate,
    WebhookPublic,
    WebhooksPage,
)
from core.tables import Webhook, WebhookDelivery
from core.webhooks import new_secret

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=AUTH_RESPONSES, dependencies=[TRAIN])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorDetail}}


def _get(session: Session, webhook_id: str, owner: str | None) -> Webhook:
    """The owner's webhook; 404 for another owner's, as if absent."""
    row = session.get(Webhook, webhook_id)
    if row is None or (owner is not None and row.owner != owner):
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"webhook {webhook_id!r} not found; GET /v1/webhooks lists yours"
        )
    return row


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={422: {"model": ErrorDetail, "description": "not an http(s) URL, or not at a public address"}},
)
def create_webhook(
    body: WebhookCreate, session: SessionDep, settings: SettingsDep, owner: CurrentOwner
) -> WebhookPublic:
    """Register a URL that gets a signed POST whenever one of your jobs, conversions or evaluations ends."""
    check_callbacks([body.url], settings, field="url")
    row = Webhook(owner=owner, url=body.url, secret=new_secret())
    session.add(row)
    session.commit()
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
    return WebhookPublic.from_row(_get(session, webhook_id, owner))


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
def delete_webhook(webhook_id: str, session: SessionDep, owner: CurrentOwner) -> None:
    """Stop sending to this webhook; its deliveries, pending ones too, go with it."""
    row = _get(session, webhook_id, owner)
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
    row = _get(session, webhook_id, owner)
    of_webhook = WebhookDelivery.webhook_id == row.id
    rows = session.scalars(
        select(WebhookDelivery).where(of_webhook).order_by(WebhookDelivery.created_at.desc()).limit(limit)
    ).all()
    count = session.scalar(select(func.count()).select_from(WebhookDelivery).where(of_webhook)) or 0
    return DeliveriesPage(items=[DeliveryPublic.from_row(r) for r in rows], count=count)
