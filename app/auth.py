"""API keys on requests: who is calling (the key's owner) and what it may do (its scope).

Keys are static ones from EFFDET_API_KEYS (scope admin, owner a prefix of the key's hash) or stored ones made by
`effdet-service keys create` (hashed; see app/keys.py). With no key anywhere auth is off: every caller is
anonymous, may do everything, and every row's owner is None. With at least one key every API route needs
`Authorization: Bearer KEY`; a key sees only its owner's datasets, jobs, models and evaluations, and others'
ids answer 404 as if absent. Keys are looked up on every request, so a revoked key fails on its next one, on
every API process.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.deps import SessionDep, SettingsDep
from core.tables import ApiKey, Dataset, Evaluation, Job, ModelVersion, Scope, Webhook

STATIC_OWNER_CHARS = 32
SCOPE_RANK = {Scope.predict: 0, Scope.train: 1, Scope.admin: 2}
SCOPE_ALLOWS = {
    Scope.predict: "predict and read models",
    Scope.train: "datasets, jobs, models and evaluations",
    Scope.admin: "manage keys and read every owner's usage",
}

Query = TypeVar("Query", bound=Select[Any])


@dataclass(frozen=True)
class Caller:
    """The key behind a request: the owner stored on what it creates, and its scope."""

    owner: str
    scope: Scope
    key_id: str | None  # None for a static key


def hash_key(key: str) -> str:
    """The sha256 hex digest stored for a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def static_owner(key: str) -> str:
    """The owner id of a static key (a prefix of its hash, so the key itself is never stored)."""
    return hash_key(key)[:STATIC_OWNER_CHARS]


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"})


def current_caller(request: Request, session: SessionDep, settings: SettingsDep) -> Caller | None:
    """The request's key; None when auth is off; 401 when a key is needed and missing, unknown or revoked."""
    has_db_keys = session.scalar(select(ApiKey.id).limit(1)) is not None
    if not settings.api_keys and not has_db_keys:
        return None
    token = _bearer(request)
    if token is None:
        raise _unauthorized("this server needs an API key: send 'Authorization: Bearer KEY'")
    digest = hash_key(token)
    for key in settings.api_keys:
        if hmac.compare_digest(digest, hash_key(key)):
            return Caller(owner=static_owner(key), scope=Scope.admin, key_id=None)
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest)) if has_db_keys else None
    if row is None:
        raise _unauthorized("the API key is not valid; check it or create one with `effdet-service keys create NAME`")
    if row.revoked_at is not None:
        raise _unauthorized(f"the API key {row.name!r} was revoked; ask for a new one")
    return Caller(owner=row.owner_id, scope=Scope(row.scope), key_id=row.id)


CurrentCaller = Annotated[Caller | None, Depends(current_caller)]


def current_owner(caller: CurrentCaller) -> str | None:
    """The owner id of the request's key; None when auth is off."""
    return None if caller is None else caller.owner


CurrentOwner = Annotated[str | None, Depends(current_owner)]


def needs(scope: Scope) -> Callable[[Caller | None], None]:
    """A dependency that answers 403 to a key whose scope is below `scope` (and 401 to no key)."""

    def check(caller: CurrentCaller) -> None:
        if caller is not None and SCOPE_RANK[caller.scope] < SCOPE_RANK[scope]:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"this key's scope is {caller.scope.value!r} ({SCOPE_ALLOWS[caller.scope]}); "
                f"this needs a key with scope {scope.value!r} or above",
            )

    return check


PREDICT = Depends(needs(Scope.predict))
TRAIN = Depends(needs(Scope.train))
ADMIN = Depends(needs(Scope.admin))


def owned(statement: Query, table: type[Dataset | Job | ModelVersion | Evaluation], owner: str | None) -> Query:
    """Restrict a query to the owner's rows (every owner's when auth is off), leaving out rows being deleted."""
    statement = statement.where(table.deleted_at.is_(None))
    return statement if owner is None else statement.where(table.owner == owner)


Owned = TypeVar("Owned", Dataset, Job, ModelVersion, Evaluation, Webhook)

NOUNS = {
    "datasets": "dataset",
    "jobs": "job",
    "model_versions": "model",
    "evaluations": "evaluation",
    "webhooks": "webhook",
}


def find_owned(session: Session, table: type[Owned], row_id: str, owner: str | None) -> Owned | None:
    """The row with this id if the owner may see it, else None (other owners' rows and rows being deleted)."""
    row = session.get(table, row_id)
    if row is None or getattr(row, "deleted_at", None) is not None or (owner is not None and row.owner != owner):
        return None
    return row


def get_owned(session: Session, table: type[Owned], row_id: str, owner: str | None) -> Owned:
    """The row with this id if the owner may see it; 404 otherwise (other owners' rows look absent, and so do rows
    being deleted)."""
    row = find_owned(session, table, row_id, owner)
    if row is None:
        what = NOUNS[table.__tablename__]
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{what} {row_id!r} not found; GET /v1/{what}s lists yours")
    return row
