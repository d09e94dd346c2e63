"""Stored API keys: create (shown once, kept hashed), list, revoke. Used by `effdet-service keys` and /v1/keys."""

from __future__ import annotations

import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth import hash_key
from app.schemas import KEY_NAME, OWNER_NAME
from core.tables import ApiKey, Scope, utcnow

KEY_PREFIX = "edk_"
KEY_ID = re.compile(r"^[0-9a-f]{32}$")


class KeyRequestError(ValueError):
    """A key request that cannot be met; the message says what to change."""


def _check(what: str, value: str, pattern: str, rule: str) -> None:
    if len(value) > 100 or not re.match(pattern, value):
        raise KeyRequestError(f"{what} {value!r} must be {rule}")


def create_key(session: Session, name: str, owner: str | None = None, scope: Scope = Scope.train) -> tuple[ApiKey, str]:
    """A new stored key row and the key itself (shown once; only its hash is kept). Names are unique among keys
    not revoked; an owner looking like a key id is refused, so no key can take over a key-owned resource."""
    _check("the key name", name, KEY_NAME, "1-100 printable characters without a slash")
    if owner is not None:
        _check("the owner", owner, OWNER_NAME, "1-64 letters, digits or . _ @ - (starting with a letter or digit)")
        if KEY_ID.match(owner):
            raise KeyRequestError(f"the owner {owner!r} looks like a key id; choose a team or person name")
    if active_key(session, name) is not None:
        raise KeyRequestError(f"a key named {name!r} exists; revoke it first or choose another name")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name, key_hash=hash_key(key), owner=owner, scope=scope.value)
    session.add(row)
    session.flush()
    return row, key


def active_key(session: Session, name: str) -> ApiKey | None:
    """The key of that name that is not revoked."""
    return session.scalar(select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None)))


def list_keys(session: Session) -> list[ApiKey]:
    """Every stored key, revoked ones included, oldest first."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


def revoke_key(session: Session, name: str) -> ApiKey:
    """Revoke the key of that name: its next request gets 401 (the row stays, for the record)."""
    row = active_key(session, name)
    if row is None:
        raise KeyRequestError(f"no key named {name!r} that is not revoked; `effdet-service keys list` shows them")
    row.revoked_at = utcnow()
    session.flush()
    return row
