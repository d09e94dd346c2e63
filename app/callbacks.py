"""Callback URLs named when a job, dataset or evaluation is created: checked (422 when one may not receive
events) and stored as webhooks of that one resource, in the transaction that creates it."""

from __future__ import annotations

from fastapi import HTTPException, status
from sqlalchemy.orm import Session

from core.settings import Settings
from core.tables import Webhook
from core.webhooks import CallbackUrlError, check_url, new_secret


def check_callbacks(urls: list[str], settings: Settings, field: str = "callback_urls") -> None:
    """422 naming every URL that is not http(s) or resolves to a non-public address the settings do not allow."""
    problems = []
    for i, url in enumerate(urls):
        try:
            check_url(url, settings.webhook_allowed_networks)
        except CallbackUrlError as err:
            problems.append({"loc": ["body", field, i], "msg": str(err), "type": "value_error"})
    if problems:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, problems)


def add_callbacks(session: Session, owner: str | None, urls: list[str], resource_id: str) -> None:
    """Add a webhook per URL that follows only `resource_id` (the caller's commit stores them with it)."""
    for url in dict.fromkeys(urls):
        session.add(Webhook(owner=owner, url=url, secret=new_secret(), resource_id=resource_id))
