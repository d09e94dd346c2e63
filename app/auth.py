"""API keys: static ones from EFFDET_API_KEYS and ones created with `effdet-service create-key` (stored hashed).

With no key anywhere, auth is off and every row's owner is None. With at least one key, every API route needs
`Authorization: Bearer KEY`; the key's owner id (the key row's id, or a hash prefix of a static key) is stored
on what it creates, and each key sees only its own datasets, jobs and models.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.deps import SessionDep, SettingsDep
from core.tables import ApiKey, Dataset, Evaluation, Job, ModelVersion

KEY_PREFIX = "edk_"
STATIC_OWNER_CHARS = 32

Query = TypeVar("Query", bound=Select[Any])


def hash_key(key: str) -> str:
    """The sha256 hex digest stored for a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def static_owner(key: str) -> str:
    """The owner id of a static key (a prefix of its hash, so the key itself is never stored)."""
    return hash_key(key)[:STATIC_OWNER_CHARS]


def create_key(session: Session, name: str) -> tuple[ApiKey, str]:
    """A new stored key row and the key itself (shown once; only its hash is kept)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name, key_hash=hash_key(key))
    session.add(row)
    session.flush()
    return row, key


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def current_owner(request: Request, session: SessionDep, settings: SettingsDep) -> str | None:
    """The owner id of the request's key; None when auth is off; 401 when a key is needed and not valid."""
    has_db_keys = session.scalar(select(ApiKey.id).limit(1)) is not None
    if not settings.api_keys and not has_db_keys:
        return None
    token = _bearer(request)
    if token is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "this server needs an API key: send 'Authorization: Bearer KEY'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    digest = hash_key(token)
    for key in settings.api_keys:
        if hmac.compare_digest(digest, hash_key(key)):
            return static_owner(key)
    row_id = session.scalar(select(ApiKey.id).where(ApiKey.key_hash == digest)) if has_db_keys else None
    if row_id is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "the API key is not valid; check it or create one with `effdet-service create-key NAME`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return row_id


CurrentOwner = Annotated[str | None, Depends(current_owner)]


def owned(statement: Query, table: type[Dataset | Job | ModelVersion | Evaluation], owner: str | None) -> Query:
    """Restrict a query to the owner's rows (no restriction when auth is off)."""
    return statement if owner is None else statement.where(table.owner == owner)


Owned = TypeVar("Owned", Dataset, Job, ModelVersion, Evaluation)


def get_owned(session: Session, table: type[Owned], row_id: str, owner: str | None) -> Owned:
    """The row with this id if the owner may see it; 404 otherwise (other keys' rows look absent)."""
    row = session.get(table, row_id)
    if row is None or (owner is not None and row.owner != owner):
        what = {"datasets": "dataset", "jobs": "job", "model_versions": "model", "evaluations": "evaluation"}[
            table.__tablename__
        ]
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{what} {row_id!r} not found; GET /v1/{what}s lists yours")
    return row
