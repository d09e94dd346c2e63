"""`Idempotency-Key` on the POSTs that create something (dataset uploads and versions, jobs, evaluations).

The first request with a key records what it created, in the same transaction as the creation; a retry with the
same key and the same request within 24 h gets that resource back (as it is now, with the first answer's status)
and creates nothing; the same key with a different request is a 422. Two racing first requests: the unique
(owner, key) lets one commit; the other rolls back and answers with the winner's resource.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, Response, status
from pydantic import BaseModel
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth import CurrentOwner, Owned, find_owned
from core.states import aware
from core.tables import IDEMPOTENCY_WINDOW, IdempotentRequest, utcnow

HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 255


@dataclass(frozen=True)
class IdempotencyKey:
    """The key a request sent, and its owner ("" when auth is off)."""

    owner: str
    key: str


def idempotency_key(
    owner: CurrentOwner,
    key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            description="retry-safe creation: the same key and request within 24 h return the first resource",
        ),
    ] = None,
) -> IdempotencyKey | None:
    """The request's Idempotency-Key, checked (1-255 printable ASCII characters); None when it sent none."""
    if key is None:
        return None
    if not 0 < len(key) <= MAX_KEY_CHARS or not all(32 < ord(char) < 127 for char in key):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"the {HEADER} header must be 1-{MAX_KEY_CHARS} printable ASCII characters without spaces (e.g. a UUID)",
        )
    return IdempotencyKey(owner=owner or "", key=key)


IdempotencyDep = Annotated[IdempotencyKey | None, Depends(idempotency_key)]

REPLAYED_HEADER = "Idempotent-Replayed"
"""Set to "true" on an answer that returns what an earlier request with the same key created."""


def fingerprint(path: str, *parts: str) -> str:
    """What makes two requests the same: the path and the body's canonical parts."""
    digest = hashlib.sha256(path.encode())
    for part in parts:
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()


def replay(session: Session, key: IdempotencyKey | None, request_hash: str, table: type[Owned]) -> Owned | None:
    """What the first request with this key created, if one did within 24 h and it still
    exists; 422 when the key came with a different request. Expired or dangling records are dropped."""
    if key is None:
        return None
    record = session.scalar(
        select(IdempotentRequest).where(IdempotentRequest.owner == key.owner, IdempotentRequest.key == key.key)
    )
    if record is None:
        return None
    created = aware(record.created_at)
    expired = created is None or created < utcnow() - IDEMPOTENCY_WINDOW
    if record.request_hash != request_hash and not expired:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"the {HEADER} {key.key!r} was used within 24 h for a different request; send a new key for a new request",
        )
    resource = find_owned(session, table, record.resource_id, key.owner or None)
    if expired or resource is None or record.resource_type != table.__tablename__:
        session.execute(delete(IdempotentRequest).where(IdempotentRequest.id == record.id))
        session.commit()
        return None
    return resource


def mark_replayed(response: Response) -> None:
    """Tell the client that this answer is what an earlier request with the same key created."""
    response.headers[REPLAYED_HEADER] = "true"


def replay_body(
    session: Session,
    key: IdempotencyKey | None,
    request: Request,
    response: Response,
    body: BaseModel,
    table: type[Owned],
) -> tuple[str, Owned | None]:
    """The fingerprint of a JSON request (its path and body) and, when its key already created something for it,
    that resource, with the answer marked as replayed."""
    request_hash = fingerprint(request.url.path, body.model_dump_json())
    earlier = replay(session, key, request_hash, table)
    if earlier is not None:
        mark_replayed(response)
    return request_hash, earlier


def create_once(
    session: Session, key: IdempotencyKey | None, request_hash: str, row: Owned, create: Callable[[], Owned]
) -> Owned:
    """Run `create`, which stores `row` (its id set beforehand) and commits, with the key's record added to the same
    transaction. When a racing request with the same key committed first, the unique (owner, key) fails this one:
    it rolls back, creating nothing, and the winner's resource is returned."""
    if key is None:
        return create()
    session.add(
        IdempotentRequest(
            owner=key.owner,
            key=key.key,
            request_hash=request_hash,
            resource_type=row.__tablename__,
            resource_id=row.id,
        )
    )
    try:
        return create()
    except IntegrityError:
        session.rollback()
        earlier = replay(session, key, request_hash, type(row))
        if earlier is None:
            raise
        return earlier


def forget(session: Session, key: IdempotencyKey | None) -> None:
    """Drop the key's record (its request failed after all, e.g. the queue was down), so a retry creates anew."""
    if key is not None:
        session.execute(
            delete(IdempotentRequest).where(IdempotentRequest.owner == key.owner, IdempotentRequest.key == key.key)
        )
        session.commit()
